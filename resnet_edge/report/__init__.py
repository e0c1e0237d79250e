"""Reports: plots (matplotlib, imported lazily) and tables from manifests."""
