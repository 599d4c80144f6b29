// Image decoding and ImageNet-style preprocessing for `kiln classify`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::cli {

// 8-bit RGB pixels, row-major, interleaved (height * width * 3 bytes).
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
  std::string warning;  // set when the decoder recovered from damage (e.g. a truncated JPEG)
};

// Decodes a JPEG (baseline or progressive; gray, RGB, YCbCr or CMYK) or, when built with libpng, a PNG.
// The format is told by the file's first bytes, not its name. Errors name the file.
Expected<RgbImage> DecodeImageFile(const std::string& path);
// Whether the file name looks like an image this tool reads (by extension; for directory listings).
bool HasImageExtension(const std::string& path);

// Bilinear (triangle-filter) resampling to width x height. When shrinking, the filter widens with the scale
// factor so every source pixel contributes (as PIL's and torchvision's resize do), avoiding aliasing.
RgbImage Resize(const RgbImage& src, int width, int height);

struct PreprocessOptions {
  int resize_shorter = 256;  // the shorter side is resized to this first
  int crop = 224;            // then a centered crop x crop square is cut out
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float stddev[3] = {0.229f, 0.224f, 0.225f};
};

// Resizes, center-crops and writes (pixel / 255 - mean) / std as planar CHW floats into `dst`
// (3 * crop * crop values). Error if the image is empty.
Status PreprocessImageNet(const RgbImage& image, const PreprocessOptions& options, float* dst);

}  // namespace kiln::cli
