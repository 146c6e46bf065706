file(REMOVE_RECURSE
  "libbpcrt.a"
)
