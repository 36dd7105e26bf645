"""T-AES: scoring samples of the aesthetic prompt set (the tiny world's scorer here; the paper's scorers: issue 20)."""
