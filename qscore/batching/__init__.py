"""qscore.batching"""
