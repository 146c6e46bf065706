file(REMOVE_RECURSE
  "CMakeFiles/bpcrt.dir/runtime/init.c.o"
  "CMakeFiles/bpcrt.dir/runtime/init.c.o.d"
  "CMakeFiles/bpcrt.dir/runtime/safetensors.c.o"
  "CMakeFiles/bpcrt.dir/runtime/safetensors.c.o.d"
  "libbpcrt.a"
  "libbpcrt.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/bpcrt.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
