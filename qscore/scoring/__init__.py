"""qscore.scoring"""
