import os

if os.environ.get("AF3_BROKEN_HOW") == "exit":
    raise SystemExit(3)  # a plugin that ends the interpreter at import
raise ImportError("this plugin is broken on purpose")
