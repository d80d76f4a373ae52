"""Run the Functions app without the Functions host: a local Durable engine and HTTP API
stand-in, message conversion as the Python worker does it, and an in-process driver."""
