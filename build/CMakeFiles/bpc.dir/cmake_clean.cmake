file(REMOVE_RECURSE
  "CMakeFiles/bpc.dir/compiler/main.c.o"
  "CMakeFiles/bpc.dir/compiler/main.c.o.d"
  "bpc"
  "bpc.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/bpc.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
