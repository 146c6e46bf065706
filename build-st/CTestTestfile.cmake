# CMake generated Testfile for 
# Source directory: /work/main
# Build directory: /work/main/build-st
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[test_interp]=] "/work/main/build-st/test_interp" "--jobs" "1")
set_tests_properties([=[test_interp]=] PROPERTIES  WORKING_DIRECTORY "/work/main" _BACKTRACE_TRIPLES "/work/main/CMakeLists.txt;92;add_test;/work/main/CMakeLists.txt;0;")
