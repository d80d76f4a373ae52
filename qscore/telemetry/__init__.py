"""qscore.telemetry"""
