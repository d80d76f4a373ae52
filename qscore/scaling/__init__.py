"""qscore.scaling"""
