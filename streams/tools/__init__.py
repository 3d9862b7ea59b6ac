"""The `aftersale` command line: replay, simulate, topics, worker, and the demo's tail."""
