"""qscore.bus"""
