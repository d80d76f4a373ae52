"""qscore_tools.bench"""
