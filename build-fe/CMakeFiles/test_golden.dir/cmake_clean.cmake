file(REMOVE_RECURSE
  "CMakeFiles/test_golden.dir/tests/test_golden.c.o"
  "CMakeFiles/test_golden.dir/tests/test_golden.c.o.d"
  "test_golden"
  "test_golden.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_golden.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
