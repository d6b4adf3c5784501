# Turns a binary file into a C source defining
#   const unsigned char fzip_descriptor_set[]; const size_t fzip_descriptor_set_len;
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from the FileDescriptorSet of proto/: do not edit. */\n#include <stddef.h>\n#include \"fzip_descriptors.h\"\nconst unsigned char fzip_descriptor_set[] = {\n${body}\n};\nconst size_t fzip_descriptor_set_len = ${len};\n")
