"""Tools around the product: the benchmark, the autoscaling simulator, model training.

Nothing here runs in production; the production core (`qscore`) never imports it.
"""
