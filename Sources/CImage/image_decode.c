// JPEG and PNG decoding to 8-bit RGB (see include/image_decode.h for the contract).
#include "image_decode.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void set_message(vm_image *out, const char *message) {
    snprintf(out->message, sizeof out->message, "%s", message);
}

// Gray, gray+alpha, RGB or RGBA rows (c channels) to RGB in place order: src and dst may not overlap.
static void to_rgb(const uint8_t *src, int c, size_t pixels, uint8_t *dst) {
    for (size_t i = 0; i < pixels; i++, src += c, dst += 3) {
        if (c <= 2) {
            dst[0] = dst[1] = dst[2] = src[0];
        } else {
            dst[0] = src[0];
            dst[1] = src[1];
            dst[2] = src[2];
        }
    }
}

// MARK: JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    vm_image *out;
} jpeg_error;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_error *err = (jpeg_error *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    set_message(err->out, message);
    longjmp(err->jump, 1);
}

// Warnings are ignored as Pillow does, except the end of the data before the image is complete:
// Pillow refuses truncated images unless ImageFile.LOAD_TRUNCATED_IMAGES is set. A scan whose
// entropy-coded data stops at a marker before its last block (JWRN_HIT_MARKER) is refused too,
// where Pillow gets libjpeg's gray fill: the pixels are not in the file, and a tiny file could
// otherwise claim 10^8 pixels and have them all made up (a fuzzer's find: 101 bytes, 14 s).
static void jpeg_message(j_common_ptr cinfo, int level) {
    int code = cinfo->err->msg_code;
    if (level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER)) {
        jpeg_error *err = (jpeg_error *)cinfo->err;
        set_message(err->out, code == JWRN_JPEG_EOF
                                  ? "the data ends before the image is complete (truncated file)"
                                  : "the compressed data stops before the image is complete (corrupt or truncated file)");
        longjmp(err->jump, 1);
    }
}

int vm_decode_jpeg(const uint8_t *data, size_t size, vm_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct cinfo;
    jpeg_error err;
    uint8_t *volatile row = NULL;
    volatile int status = VM_IMAGE_CORRUPT;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_message;
    err.out = out;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        vm_image_free(out);
        return status;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    out->source_channels = cinfo.num_components;
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        set_message(out, "CMYK (or YCCK) JPEG");
        status = VM_IMAGE_UNSUPPORTED;
        longjmp(err.jump, 1);
    }
    // The size the header claims is checked before jpeg_start_decompress allocates (a progressive
    // JPEG's coefficient buffer is proportional to it), and libjpeg's own allocations are capped too.
    size_t w = cinfo.image_width, h = cinfo.image_height;
    if (w * h > VM_IMAGE_MAX_PIXELS) {
        snprintf(out->message, sizeof out->message, "%zu×%zu pixels, more than the limit of 2^28", w, h);
        status = VM_IMAGE_TOO_LARGE;
        longjmp(err.jump, 1);
    }
    cinfo.mem->max_memory_to_use = VM_IMAGE_MAX_DECODER_BYTES;
    int gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
    cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    w = cinfo.output_width;
    h = cinfo.output_height;
    out->width = (int)w;
    out->height = (int)h;
    out->rgb = malloc(w * h * 3);
    row = malloc(w * 3);
    if (!out->rgb || !row) {
        set_message(out, "out of memory");
        status = VM_IMAGE_NO_MEMORY;
        longjmp(err.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW rows[1] = {gray ? row : out->rgb + y * w * 3};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (gray) to_rgb(row, 1, w, out->rgb + y * w * 3);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return VM_IMAGE_OK;
}

// MARK: PNG

typedef struct {
    const uint8_t *data;
    size_t size, offset;
    vm_image *out;
} png_source;

static void png_read_memory(png_structp png, png_bytep dst, png_size_t n) {
    png_source *src = png_get_io_ptr(png);
    if (n > src->size - src->offset) png_error(png, "the data ends before the image is complete (truncated file)");
    memcpy(dst, src->data + src->offset, n);
    src->offset += n;
}

static void png_fail(png_structp png, png_const_charp message) {
    png_source *src = png_get_error_ptr(png);
    set_message(src->out, message);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

int vm_decode_png(const uint8_t *data, size_t size, vm_image *out) {
    memset(out, 0, sizeof *out);
    png_source src = {data, size, 0, out};
    volatile int status = VM_IMAGE_CORRUPT;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(out, "out of memory");
        return VM_IMAGE_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        vm_image_free(out);
        return status;
    }
    png_set_read_fn(png, &src, png_read_memory);
    png_set_user_limits(png, 1 << 16, 1 << 16);
    png_set_chunk_malloc_max(png, 8 << 20);  // ancillary chunks (iCCP, zTXt …) inflate to at most 8 MiB
    png_read_info(png, info);
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    out->source_channels = png_get_channels(png, info);
    if (depth == 16 && type == PNG_COLOR_TYPE_GRAY) {
        set_message(out, "16-bit grayscale PNG (Pillow's I;16, which convert(\"RGB\") clips at 255)");
        status = VM_IMAGE_UNSUPPORTED;
        png_longjmp(png, 1);
    }
    size_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w * h > VM_IMAGE_MAX_PIXELS) {
        snprintf(out->message, sizeof out->message, "%zu×%zu pixels, more than the limit of 2^28", w, h);
        status = VM_IMAGE_TOO_LARGE;
        png_longjmp(png, 1);
    }
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // adds alpha when tRNS; dropped below
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);  // the high byte, as Pillow's RGB;16B and LA;16B
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != w * (size_t)c) {
        set_message(out, "unexpected row layout after the 8-bit transforms");
        png_longjmp(png, 1);
    }
    out->width = (int)w;
    out->height = (int)h;
    pixels = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    out->rgb = malloc(w * h * 3);
    if (!pixels || !rows || !out->rgb) {
        set_message(out, "out of memory");
        status = VM_IMAGE_NO_MEMORY;
        png_longjmp(png, 1);
    }
    for (size_t y = 0; y < h; y++) rows[y] = pixels + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    to_rgb(pixels, c, w * h, out->rgb);
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return VM_IMAGE_OK;
}

void vm_image_free(vm_image *image) {
    free(image->rgb);
    image->rgb = NULL;
}
