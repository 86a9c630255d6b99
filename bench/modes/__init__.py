"""The contenders: limit, library (in-process), ours and peer (HTTP)."""
