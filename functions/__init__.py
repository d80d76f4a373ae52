"""Azure Functions blueprints; function_app.py at the repo root registers them."""
