"""qscore.inference"""
