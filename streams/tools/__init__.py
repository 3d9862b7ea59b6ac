"""The `aftersale` command line: replay (one process or sharded), simulate, topics, worker,
and the demo's tail."""
