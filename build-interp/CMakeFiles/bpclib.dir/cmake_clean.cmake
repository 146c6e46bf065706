file(REMOVE_RECURSE
  "CMakeFiles/bpclib.dir/compiler/diag.c.o"
  "CMakeFiles/bpclib.dir/compiler/diag.c.o.d"
  "CMakeFiles/bpclib.dir/compiler/interp.c.o"
  "CMakeFiles/bpclib.dir/compiler/interp.c.o.d"
  "CMakeFiles/bpclib.dir/compiler/ir.c.o"
  "CMakeFiles/bpclib.dir/compiler/ir.c.o.d"
  "CMakeFiles/bpclib.dir/compiler/shape.c.o"
  "CMakeFiles/bpclib.dir/compiler/shape.c.o.d"
  "CMakeFiles/bpclib.dir/compiler/util.c.o"
  "CMakeFiles/bpclib.dir/compiler/util.c.o.d"
  "CMakeFiles/bpclib.dir/compiler/yaml.c.o"
  "CMakeFiles/bpclib.dir/compiler/yaml.c.o.d"
  "libbpclib.a"
  "libbpclib.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/bpclib.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
