"""qscore.bench"""
