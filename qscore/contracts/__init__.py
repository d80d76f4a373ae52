"""qscore.contracts"""
