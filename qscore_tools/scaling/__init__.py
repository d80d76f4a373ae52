"""qscore_tools.scaling"""
