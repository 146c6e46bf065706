#include <criterion/criterion.h>
#include "bpcc.h"
Test(interp, smoke) { cr_assert(1); }
