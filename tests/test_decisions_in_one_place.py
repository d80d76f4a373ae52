"""No decision table or rule about a request is consulted from two places (issue 25).

Each rule has one function in the core that both runtimes call; this reads every module of the
core and both runtimes with `ast` (docstrings and comments do not count) and fails when code
elsewhere consults what that function owns:

- the outcome table of an error code (`qscore.contracts.errors.BAD_INPUT`, its `outcome`
  column, `ContractViolation.outcome`): read only by `rejection_disposition`
  (qscore/scoring/rejection.py), which says reply, dead-letter or both;
- the reply address: the reply policy's rules (`default_queue`, `allowed_queues`,
  `sessions_required`, `allows`) and the codes that refuse an address are read or raised only
  by `reply_address_of` (qscore/scoring/envelope.py);
- the envelope check: the content-type and unreadable-properties codes are raised only by
  `check_content_type` / `unreadable_properties` (qscore/scoring/envelope.py);
- the model of a request that failed to parse: a request body is decoded only by the core's
  preparer (`RequestPreparer`, qscore/scoring/prepare.py) and read for its model only by
  `model_named_in` there; the runtimes never decode a request body themselves (the HTTP API
  alone checks a submitted request's deadline before it accepts it, `functions/http_api.py`);
- the trace context of a request: the `traceparent`/`tracestate` keys are read only from what
  `trace_carrier` (qscore/telemetry/propagation.py) returns (any case of the name, and Azure's
  `Diagnostic-Id`, which is named nowhere else), or from a carrier our own span was just
  injected into (`inject_trace_context`);
- the reply-batch form: whether a request-batch message's items share reply messages
  (`accepts_reply_batch`) is asked only by `reply_batch_of` (qscore/scoring/envelope.py), and
  which replies share one (`reply_messages`) only by the reply sender's `plan_reply_messages`
  (qscore/transport/reply_batches.py), which both runtimes send through.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("qscore", "workers", "functions", "function_app.py")

OUTCOME_TABLE = {"BAD_INPUT", "BadInput", "ERROR_REPLY", "Outcome"}
OUTCOME_TABLE_OWNERS = {
    "qscore/contracts/errors.py",
    "qscore/contracts/__init__.py",
    "qscore/scoring/rejection.py",
}
ENVELOPE_OWNER = "qscore/scoring/envelope.py"
REPLY_POLICY_RULES = {"default_queue", "allowed_queues", "sessions_required", "allows"}
ENVELOPE_CODES = {
    "NO_MESSAGE_ID",
    "NO_REPLY_ADDRESS",
    "NO_REPLY_SESSION",
    "REPLY_TO_NOT_ALLOWED",
    "UNSUPPORTED_CONTENT_TYPE",
    "UNREADABLE_PROPERTIES",
}
TRACE_OWNER = "qscore/telemetry/propagation.py"
# The reply-batch rules (defined in qscore/contracts/reply_batch.py) and their one caller each.
REPLY_BATCH_CALLERS = {
    "accepts_reply_batch": ENVELOPE_OWNER,
    "reply_messages": "qscore/transport/reply_batches.py",
}
REQUEST_DECODERS = {"decode_request", "decode_binary_request"}
DECODER_USERS = {"qscore/scoring/prepare.py", "functions/http_api.py"}
TRACE_KEYS = {"traceparent", "tracestate"}
# Names of what a `.outcome` is read from that is a settlement's (Settled.outcome), not a code's.
SETTLEMENT_NAMES = {"settled"}
# Names an error code's violation goes by: its `.outcome` is the table's column.
VIOLATION_NAMES = {"violation", "refusal", "rejection", "exc", "error", "mismatch"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for part in PARTS:
        target = ROOT / part
        for path in [target] if target.is_file() else sorted(target.rglob("*.py")):
            name = str(path.relative_to(ROOT))
            yield name, ast.parse(path.read_text(), filename=name)


def _docstrings(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _functions(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _carriers(scope: ast.AST) -> set[str]:
    """Names bound in `scope` to what `trace_carrier` returned, or injected with our own span."""
    names: set[str] = set()
    for node in ast.walk(scope):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and _called(node.value) == "trace_carrier"
        ):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        if isinstance(node, ast.Call) and _called(node) == "inject_trace_context" and node.args:
            first = node.args[0]
            names |= {first.id} if isinstance(first, ast.Name) else set()
    return names


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _key_read(node: ast.AST) -> tuple[ast.expr, str] | None:
    """(what is read from, the key) for `x.get("key")` and a `x["key"]` read."""
    key: ast.expr | None = None
    source: ast.expr | None = None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
    ):
        source, key = node.func.value, node.args[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        source, key = node.value, node.slice
    if source is None or not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
        return None
    return source, key.value


def _imports_the_table(node: ast.ImportFrom) -> list[str]:
    if node.module not in ("qscore.contracts", "qscore.contracts.errors"):
        return []
    return [
        alias.name
        for alias in node.names
        if alias.name in OUTCOME_TABLE
        or (alias.name == "DEAD_LETTERED" and node.module == "qscore.contracts.errors")
    ]


def _node_problems(name: str, node: ast.AST, docstrings: set[int]) -> list[str]:
    """What `node` (in module `name`) consults that another place owns."""
    where = f"{name}:{getattr(node, 'lineno', '?')}"
    runtime = not name.startswith("qscore/")
    table_owner = name in OUTCOME_TABLE_OWNERS
    found: list[str] = []
    if isinstance(node, ast.ImportFrom) and not table_owner:
        found += [f"{where} imports the outcome table's {each}" for each in _imports_the_table(node)]
    if isinstance(node, ast.Name) and node.id in OUTCOME_TABLE - {"Outcome"} and not table_owner:
        found.append(f"{where} reads the outcome table ({node.id})")
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        base = node.value.id if isinstance(node.value, ast.Name) else None
        if node.attr == "outcome" and runtime and base not in SETTLEMENT_NAMES:
            found.append(f"{where} reads {base}.outcome (a code's outcome is rejection_disposition's)")
        if node.attr == "outcome" and base in VIOLATION_NAMES and not table_owner:
            found.append(f"{where} reads a violation's outcome (rejection_disposition's)")
        if node.attr in REPLY_POLICY_RULES and name != ENVELOPE_OWNER:
            found.append(f"{where} reads the reply policy's {node.attr} (reply_address_of's)")
        elsewhere = name not in (ENVELOPE_OWNER, "qscore/contracts/errors.py")  # errors.py: the rows
        if node.attr in ENVELOPE_CODES and base == "ErrorCode" and elsewhere:
            found.append(f"{where} gives ErrorCode.{node.attr} (the envelope check's)")
    decoder = (
        node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    )
    if decoder in REQUEST_DECODERS and name not in DECODER_USERS and not name.startswith("qscore/contracts/"):
        found.append(f"{where} decodes a request body ({decoder}: the preparer's, model_named_in's)")
    imported = {alias.name for alias in node.names} if isinstance(node, ast.ImportFrom) else set()
    if imported & REQUEST_DECODERS and name not in DECODER_USERS and not name.startswith("qscore/contracts/"):
        found.append(f"{where} imports a request decoder (the preparer's)")
    called = _called(node) if isinstance(node, ast.Call) else None
    owner = REPLY_BATCH_CALLERS.get(called or "")
    if owner is not None and name != owner and not name.startswith("qscore/contracts/"):
        found.append(f"{where} calls {called} ({owner}'s)")
    text = node.value if isinstance(node, ast.Constant) and id(node) not in docstrings else None
    if isinstance(text, str) and text.lower() == "diagnostic-id" and name != TRACE_OWNER:
        found.append(f"{where} names Diagnostic-Id (trace_carrier reads it)")
    return found


def _trace_reads(name: str, tree: ast.Module) -> list[str]:
    found: list[str] = []
    for scope in _functions(tree):
        carriers = _carriers(scope)
        for node in ast.walk(scope):
            read = _key_read(node)
            if read is None or read[1].lower() not in TRACE_KEYS:
                continue
            source, key = read
            if not (isinstance(source, ast.Name) and source.id in carriers):
                found.append(f"{name}:{getattr(node, 'lineno', '?')} reads {key!r} without trace_carrier")
    return found


def consulted_elsewhere(modules: list[tuple[str, ast.Module]]) -> list[str]:
    wrong: list[str] = []
    for name, tree in modules:
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            wrong += _node_problems(name, node, docstrings)
        if name != TRACE_OWNER:
            wrong += _trace_reads(name, tree)
    return sorted(set(wrong))


def test_each_rule_about_a_request_is_consulted_in_one_place() -> None:
    wrong = consulted_elsewhere(list(_modules()))
    assert not wrong, "\n".join(wrong)


SEEDED = {
    "table": "from qscore.contracts.errors import BAD_INPUT\n",
    "column": "def f(violation):\n    return violation.outcome == 'dead_lettered'\n",
    "policy": "def f(policy, queue):\n    return policy.allows(queue)\n",
    "code": "from qscore.contracts import ErrorCode\nX = ErrorCode.NO_REPLY_ADDRESS\n",
    "trace": "def f(message):\n    return message.application_properties.get('traceparent')\n",
    "diagnostic": "KEY = 'Diagnostic-Id'\n",
    "decode": "def f(body):\n    return contracts.decode_request(body).model\n",
    "reply_batch": "def f(message):\n    return accepts_reply_batch(message.accept)\n",
    "reply_messages": "def f(keys):\n    return reply_batch.reply_messages(keys, entry_of=g)\n",
}


@pytest.mark.parametrize("seeded", sorted(SEEDED))
def test_the_check_sees_a_seeded_second_place(seeded: str) -> None:
    tree = ast.parse(SEEDED[seeded])
    assert consulted_elsewhere([("workers/seeded.py", tree)])


def test_the_check_lets_a_runtime_read_what_trace_carrier_gave() -> None:
    code = (
        "def f(message):\n"
        "    carrier = trace_carrier(message.application_properties)\n"
        "    return carrier.get('traceparent')\n"
    )
    assert consulted_elsewhere([("functions/seeded.py", ast.parse(code))]) == []
