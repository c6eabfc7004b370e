"""Pages and pictures of the ledger: the figures (pure), their SVG and PNG renderers, the HTML pages and
the local server of `compute ui`."""
