"""qscore.triton"""
