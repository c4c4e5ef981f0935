// libFuzzer target: THE image decoder on arbitrary bytes. It must return an
// error or an image, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>

#include "common/image_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    crfs::MemorySource src(data, size);
    auto img = crfs::decode_image(src, {.keep_data = true});
    if (img) {
        // Touch what was decoded so the sanitizers see every byte that was kept.
        volatile size_t n = img->vmas.size() + img->pages.size() + img->fds.size();
        (void)n;
    }
    return 0;
}
