"""qscore.registry"""
