"""The qscore Azure Functions app (Python v2 programming model).

The host indexes this module: one DFApp with the blueprints from functions/ registered on it.
Scoring itself lives in qscore/ (shared with the worker); see docs/functions.md.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions import activities, http_api, orchestrator, trigger
from functions.telemetry import configure_from_environment

# Application Insights (APPLICATIONINSIGHTS_CONNECTION_STRING) and/or OTLP when configured.
configure_from_environment()

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)  # the HTTP API checks Entra tokens itself
app.register_functions(trigger.bp)
app.register_functions(orchestrator.bp)
app.register_functions(activities.bp)
app.register_functions(http_api.bp)
