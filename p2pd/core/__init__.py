"""
The vocabulary every layer of p2pd shares: file metadata, error kinds and
codes, peers, network helpers and sizes. Imports nothing of p2pd.
"""
