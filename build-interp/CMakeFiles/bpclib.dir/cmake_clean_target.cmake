file(REMOVE_RECURSE
  "libbpclib.a"
)
