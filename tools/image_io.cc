#include "image_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#ifdef KILN_HAVE_JPEG
#include <jpeglib.h>
#endif
#ifdef KILN_HAVE_PNG
#include <png.h>
#endif

namespace kiln::cli {
namespace {

// Larger images are refused: 2^28 pixels is 768 MiB of RGB, far past any classifier input.
constexpr int64_t kMaxPixels = int64_t{1} << 28;

#ifdef KILN_HAVE_JPEG
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnJpegError(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void OnJpegMessage(j_common_ptr) {}  // libjpeg's warnings (e.g. extraneous bytes) are not worth printing

// Kept free of C++ objects with destructors: libjpeg reports errors by longjmp out of its calls.
// Returns nullptr-free error text in `error` (empty on success).
void DecodeJpegC(const unsigned char* data, unsigned long size, RgbImage* out, std::vector<uint8_t>* row_buf,
                 char* error, size_t error_size) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = OnJpegError;
  err.mgr.output_message = OnJpegMessage;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    std::snprintf(error, error_size, "%s", err.message[0] ? err.message : "corrupt JPEG data");
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, size);
  jpeg_read_header(&cinfo, TRUE);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int64_t pixels = static_cast<int64_t>(cinfo.output_width) * cinfo.output_height;
  if (pixels == 0 || pixels > kMaxPixels) {
    std::snprintf(error, error_size, "image of %ux%u pixels is empty or too large", cinfo.output_width,
                  cinfo.output_height);
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  out->width = static_cast<int>(cinfo.output_width);
  out->height = static_cast<int>(cinfo.output_height);
  out->pixels.resize(static_cast<size_t>(pixels) * 3);
  row_buf->resize(static_cast<size_t>(cinfo.output_width) * cinfo.output_components);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = row_buf->data();
    uint8_t* dst = out->pixels.data() + static_cast<size_t>(cinfo.output_scanline) * out->width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (cmyk) {
      // Adobe writes CMYK JPEGs inverted (0 = full ink), so the channel values multiply directly.
      for (int x = 0; x < out->width; ++x) {
        const int k = row[4 * x + 3];
        for (int c = 0; c < 3; ++c) dst[3 * x + c] = static_cast<uint8_t>((row[4 * x + c] * k + 127) / 255);
      }
    } else {
      std::memcpy(dst, row, static_cast<size_t>(out->width) * 3);
    }
  }
  if (err.mgr.num_warnings > 0) {
    char last[JMSG_LENGTH_MAX];
    (*err.mgr.format_message)(reinterpret_cast<j_common_ptr>(&cinfo), last);
    out->warning = last;
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
}
#endif

Expected<RgbImage> DecodeJpeg(const std::string& bytes, const std::string& path) {
#ifdef KILN_HAVE_JPEG
  RgbImage image;
  std::vector<uint8_t> row_buf;
  char error[JMSG_LENGTH_MAX + 64] = {0};
  DecodeJpegC(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()),
              &image, &row_buf, error, sizeof(error));
  if (error[0]) return InvalidArgument(path + ": cannot decode JPEG: " + error);
  return image;
#else
  return Unsupported(path + ": this kiln was built without libjpeg, so it cannot read JPEG images");
#endif
}

Expected<RgbImage> DecodePng(const std::string& bytes, const std::string& path) {
#ifdef KILN_HAVE_PNG
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    return InvalidArgument(path + ": cannot decode PNG: " + png.message);
  }
  const int64_t pixels = static_cast<int64_t>(png.width) * png.height;
  if (pixels == 0 || pixels > kMaxPixels) {
    png_image_free(&png);
    return InvalidArgument(path + ": image of " + std::to_string(png.width) + "x" +
                           std::to_string(png.height) + " pixels is empty or too large");
  }
  png.format = PNG_FORMAT_RGB;  // libpng composes alpha onto black and expands gray and palettes
  RgbImage image;
  image.width = static_cast<int>(png.width);
  image.height = static_cast<int>(png.height);
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    std::string message = png.message;
    png_image_free(&png);
    return InvalidArgument(path + ": cannot decode PNG: " + message);
  }
  return image;
#else
  return Unsupported(path + ": this kiln was built without libpng, so it cannot read PNG images");
#endif
}

// Contribution weights of source pixels to each destination pixel along one axis.
struct AxisWeights {
  std::vector<int> first;      // first source index per destination index
  std::vector<int> count;      // number of source pixels per destination index
  std::vector<float> weights;  // count[i] weights per destination i, at i * stride
  int stride = 0;
};

AxisWeights ComputeWeights(int src_size, int dst_size) {
  const double scale = static_cast<double>(src_size) / dst_size;
  const double support = std::max(1.0, scale);  // the triangle's half-width in source pixels
  AxisWeights w;
  w.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  w.first.resize(dst_size);
  w.count.resize(dst_size);
  w.weights.assign(static_cast<size_t>(dst_size) * w.stride, 0.f);
  for (int i = 0; i < dst_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(std::floor(center - support)));
    const int hi = std::min(src_size, static_cast<int>(std::ceil(center + support)));
    double total = 0;
    int n = 0;
    for (int s = lo; s < hi && n < w.stride; ++s, ++n) {
      const double x = (s + 0.5 - center) / support;
      const double k = std::max(0.0, 1.0 - std::abs(x));
      w.weights[static_cast<size_t>(i) * w.stride + n] = static_cast<float>(k);
      total += k;
    }
    if (total > 0) {
      for (int j = 0; j < n; ++j)
        w.weights[static_cast<size_t>(i) * w.stride + j] /= static_cast<float>(total);
    }
    w.first[i] = lo;
    w.count[i] = n;
  }
  return w;
}

}  // namespace

bool HasImageExtension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

Expected<RgbImage> DecodeImageFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return NotFound(path + ": " +
                    (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return DecodeJpeg(bytes, path);
  if (bytes.size() >= 8 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return DecodePng(bytes, path);
  return InvalidArgument(path + ": not a JPEG or PNG image");
}

RgbImage Resize(const RgbImage& src, int width, int height) {
  const AxisWeights wx = ComputeWeights(src.width, width);
  const AxisWeights wy = ComputeWeights(src.height, height);
  // Horizontal pass into floats (src.height x width), then vertical pass into bytes.
  std::vector<float> tmp(static_cast<size_t>(src.height) * width * 3);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* row = src.pixels.data() + static_cast<size_t>(y) * src.width * 3;
    float* out = tmp.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) {
      const float* k = wx.weights.data() + static_cast<size_t>(x) * wx.stride;
      float acc[3] = {0, 0, 0};
      for (int j = 0; j < wx.count[x]; ++j) {
        const uint8_t* p = row + static_cast<size_t>(wx.first[x] + j) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += k[j] * p[c];
      }
      for (int c = 0; c < 3; ++c) out[3 * x + c] = acc[c];
    }
  }
  RgbImage dst;
  dst.width = width;
  dst.height = height;
  dst.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    const float* k = wy.weights.data() + static_cast<size_t>(y) * wy.stride;
    uint8_t* out = dst.pixels.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width * 3; ++x) {
      float acc = 0;
      for (int j = 0; j < wy.count[y]; ++j)
        acc += k[j] * tmp[static_cast<size_t>(wy.first[y] + j) * width * 3 + x];
      out[x] = static_cast<uint8_t>(std::clamp(std::lround(acc), 0L, 255L));
    }
  }
  return dst;
}

Status PreprocessImageNet(const RgbImage& image, const PreprocessOptions& o, float* dst) {
  if (image.width <= 0 || image.height <= 0) return InvalidArgument("empty image");
  if (o.crop <= 0 || o.resize_shorter < o.crop) return InvalidArgument("bad resize/crop sizes");
  const double scale = static_cast<double>(o.resize_shorter) / std::min(image.width, image.height);
  const int w = image.width <= image.height
                    ? o.resize_shorter
                    : std::max(o.resize_shorter, static_cast<int>(std::lround(image.width * scale)));
  const int h = image.height < image.width
                    ? o.resize_shorter
                    : std::max(o.resize_shorter, static_cast<int>(std::lround(image.height * scale)));
  const RgbImage resized = Resize(image, w, h);
  const int left = (w - o.crop) / 2;
  const int top = (h - o.crop) / 2;
  const size_t plane = static_cast<size_t>(o.crop) * o.crop;
  for (int y = 0; y < o.crop; ++y) {
    const uint8_t* row = resized.pixels.data() + (static_cast<size_t>(top + y) * w + left) * 3;
    for (int x = 0; x < o.crop; ++x) {
      for (int c = 0; c < 3; ++c) {
        dst[c * plane + static_cast<size_t>(y) * o.crop + x] =
            (row[3 * x + c] / 255.f - o.mean[c]) / o.stddev[c];
      }
    }
  }
  return Status::Ok();
}

}  // namespace kiln::cli
