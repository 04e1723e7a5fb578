// Decoding of JPEG (libjpeg-turbo) and PNG (libpng) files held in memory into 8-bit RGB,
// as Pillow's Image.open(...).convert("RGB") does. C because libjpeg and libpng report errors by
// longjmp, which Swift cannot catch.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    VM_IMAGE_OK = 0,
    VM_IMAGE_CORRUPT = 1,      // the library reported an error (truncated or corrupt data)
    VM_IMAGE_UNSUPPORTED = 2,  // valid but not decodable as Pillow would to RGB (CMYK JPEG, 16-bit gray PNG)
    VM_IMAGE_TOO_LARGE = 3,    // width * height over VM_IMAGE_MAX_PIXELS
    VM_IMAGE_NO_MEMORY = 4,
} vm_image_status;

#define VM_IMAGE_MAX_PIXELS (1 << 28)
// libjpeg's working memory beyond the output (a progressive JPEG at the pixel limit needs 1.5 GiB).
#define VM_IMAGE_MAX_DECODER_BYTES (2L << 30)

// A decoded image: rgb[height][width][3], malloc'ed (free with vm_image_free).
typedef struct {
    uint8_t *rgb;
    int width, height;
    int source_channels;  // channels in the file: 1 gray, 2 gray+alpha, 3 RGB/YCbCr, 4 RGBA or CMYK
    char message[200];    // the library's message on failure
} vm_image;

// Decodes a JPEG: baseline or progressive, gray or YCbCr/RGB, default (ISLOW) IDCT and fancy
// upsampling, as Pillow. Truncated data is an error (Pillow's LOAD_TRUNCATED_IMAGES is off).
int vm_decode_jpeg(const uint8_t *data, size_t size, vm_image *out);

// Decodes a PNG of any bit depth and color type except 16-bit gray (Pillow's "I;16", which its
// convert("RGB") clips): palette via the palette, gray replicated, alpha dropped, 16-bit channels
// by their high byte (Pillow's "RGB;16B"), transparency (tRNS) and gamma (gAMA) ignored.
int vm_decode_png(const uint8_t *data, size_t size, vm_image *out);

void vm_image_free(vm_image *image);
