"""The local stack: stand-ins for Azure services and the demo.

Nothing here runs in production. `qscore_local.bus` is an AMQP endpoint that the real
azure-servicebus SDK talks to in place of a Service Bus namespace, `qscore_local.triton`
starts the real Triton server on loopback (CPU), `qscore_local.functions_host` drives the
Functions app in-process in place of the Functions host, and `qscore_local.demo` runs the
whole path end to end. The production core (`qscore`) and the runtimes never import it.
"""
