"""qscore.transport"""
