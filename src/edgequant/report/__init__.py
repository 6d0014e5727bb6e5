"""Report rendering: JSON and Markdown writers."""
