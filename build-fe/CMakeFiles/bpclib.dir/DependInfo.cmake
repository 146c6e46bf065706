
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/compiler/diag.c" "CMakeFiles/bpclib.dir/compiler/diag.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/diag.c.o.d"
  "/work/main/compiler/expand.c" "CMakeFiles/bpclib.dir/compiler/expand.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/expand.c.o.d"
  "/work/main/compiler/interp.c" "CMakeFiles/bpclib.dir/compiler/interp.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/interp.c.o.d"
  "/work/main/compiler/ir.c" "CMakeFiles/bpclib.dir/compiler/ir.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/ir.c.o.d"
  "/work/main/compiler/load.c" "CMakeFiles/bpclib.dir/compiler/load.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/load.c.o.d"
  "/work/main/compiler/parse.c" "CMakeFiles/bpclib.dir/compiler/parse.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/parse.c.o.d"
  "/work/main/compiler/shape.c" "CMakeFiles/bpclib.dir/compiler/shape.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/shape.c.o.d"
  "/work/main/compiler/show.c" "CMakeFiles/bpclib.dir/compiler/show.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/show.c.o.d"
  "/work/main/compiler/util.c" "CMakeFiles/bpclib.dir/compiler/util.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/util.c.o.d"
  "/work/main/compiler/yaml.c" "CMakeFiles/bpclib.dir/compiler/yaml.c.o" "gcc" "CMakeFiles/bpclib.dir/compiler/yaml.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build-fe/CMakeFiles/bpcrt.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
