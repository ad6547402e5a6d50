"""The visualizer: one view-data structure (data.py) rendered for the terminal, HTML and DOT."""
