// kernels_bc.S — embeds the kernel library's LLVM bitcode (built from
// runtime/kernels.c by clang-19, see CMakeLists.txt) into libbpc, so bpc can
// link it into every generated module without files on disk.
        .section .rodata
        .global bpc_kernels_bc
        .global bpc_kernels_bc_end
        .balign 16
bpc_kernels_bc:
        .incbin KERNELS_BC_PATH
bpc_kernels_bc_end:
        .byte 0
        .section .note.GNU-stack,"",@progbits
