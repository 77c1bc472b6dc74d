// The loader's design, as a list (data/loader.h states the contract):
//  - Order. Train: a Fisher-Yates permutation of the canonical sample order, drawn from Philox
//    with key f(seed) and counter (epoch, step), so it is a pure function of (seed, epoch). Val:
//    the canonical order itself.
//  - Shards. With G = world * batch, worker r's batch b holds the samples at epoch positions
//    b*G + r + k*world, k = 0..batch-1: the workers interleave inside every global batch, so a
//    global batch is the same G positions whatever the world size slices it into.
//    Train: batches_per_epoch = floor(N / G), the tail is dropped. Val: every position < N is
//    used exactly once; batches_per_epoch = ceil(ceil(N / world) / batch), the same on every
//    worker, so a worker whose share is shorter gets a last batch with `count` < batch, or even
//    count 0 (its slots past `count` hold stale pixels and label 0), and all workers run the
//    same number of steps.
//  - Augmentation. Crop box and flip come from (seed, epoch, sample index) via augment.h; the
//    JPEG is DCT-decoded at the smallest scale that keeps >= image_size pixels across the box,
//    and resize_crop resamples (and mirrors) the box into the batch slot. HostBatch.flips is left
//    undefined: the flip is already applied.
//  - Threads. `threads` decode threads take work one sample slot at a time, in order, from a
//    ring of prefetch + 1 pinned batches (the one the worker holds plus `prefetch` ahead). The
//    worker's next() releases the batch it held and waits (timed) for the next. start_epoch()
//    stops handing out work, waits for samples in flight, then refills. The destructor stops and
//    joins the threads after their current sample.
//  - Bad images. A sample whose file cannot be read or decoded is bad. `skip`: the slot takes the
//    next sample in the canonical order (wrapping) that decodes, with its own label and the bad
//    sample's augmentation draws; this depends only on the files, never on timing. Failed
//    candidates tried while looking for a replacement are not counted again (they count in the
//    slot they own). Counts and the list (path: reason, first 100) are updated when next()
//    hands the batch out, so they too are deterministic. `fail`: next() throws DataError naming
//    the path. Either way, when the bad samples seen in this epoch exceed max_bad_fraction of
//    this worker's samples of the epoch, next() throws DataError with the list.
//  - Errors that are not bad images (anything else a decode thread throws) are stored with the
//    batch and rethrown by next() as DataError naming the path: never lost, never a hang.
#include "data/loader.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <numeric>
#include <sstream>

#include "data/decode.h"
#include "data/decode_crop.h"
#include "kernels/memory.h"
#include "kernels/philox.h"

namespace lockstep::data {

namespace testing {
// A test seam (not in the header on purpose): when set, called by a decode thread before each
// sample it processes; whatever it throws travels to next() like any unexpected error.
void (*loader_fault_hook)(int64_t sample) = nullptr;
}  // namespace testing

namespace {

constexpr uint64_t kOrderKey = 0x0dde7a11c0ffee5bull;
constexpr size_t kMaxBadPaths = 100;

std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  const uint64_t key = kOrderKey ^ (seed * 0x9E3779B97F4A7C15ull);
  const uint64_t base = static_cast<uint64_t>(epoch) << 40;
  for (int64_t i = n - 1; i > 0; --i) {
    Philox4 r = philox4x32_10(key, base + static_cast<uint64_t>(i));
    uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
    // Lemire's multiply-high: uniform enough in [0, i] for any realistic n.
    auto j = static_cast<int64_t>((static_cast<unsigned __int128>(bits) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

struct BadRecord {
  int k;  // slot in the batch: the order the records are reported in, whatever thread saw them first
  std::string path, reason;
};

}  // namespace

struct Loader::Impl {
  struct Slot {
    PinnedBuffer images, labels;   // (batch, S, S, 3) u8, (batch) i32
    HostBatch batch;
    int64_t number = -1;           // batch of the epoch it holds or is being filled with
    std::vector<int64_t> samples;  // sample index per valid slot
    int remaining = 0;             // samples not yet done
    bool ready = false;
    std::vector<BadRecord> bad;
    std::exception_ptr error;
  };
  struct Task {
    Slot* slot;
    int k;
    int64_t sample;
  };

  FolderIndex index;
  LoaderConfig cfg;
  int64_t bpe = 0;
  int64_t epoch_samples_ = 0;  // this worker's valid samples per epoch

  mutable std::mutex m;
  std::condition_variable work_cv, ready_cv, idle_cv;
  bool stop = false, started = false;
  int64_t epoch = 0;
  std::vector<int64_t> order;      // this epoch's positions -> sample index
  std::vector<Slot> ring;
  int64_t released = 0;            // batches below this are free to refill
  int64_t pos = 0;                 // the batch next() returns
  int64_t fill_batch = 0;          // the batch work is being handed out for
  int fill_k = 0;
  int in_flight = 0;
  int64_t epoch_bad = 0;
  LoaderStats stats;
  std::vector<std::thread> threads;

  Impl(FolderIndex idx, const LoaderConfig& c) : index(std::move(idx)), cfg(c) {
    LS_CHECK(cfg.image_size >= 1 && cfg.batch >= 1, "loader: image size and batch must be positive");
    LS_CHECK(cfg.world >= 1 && cfg.rank >= 0 && cfg.rank < cfg.world,
             "loader: rank " << cfg.rank << " is not in [0, " << cfg.world << ")");
    LS_CHECK(cfg.threads >= 1 && cfg.prefetch >= 1, "loader: threads and prefetch must be >= 1");
    LS_CHECK(cfg.max_bad_fraction >= 0 && cfg.max_bad_fraction <= 1, "loader: max_bad_fraction must be in [0, 1]");
    const auto n = static_cast<int64_t>(index.samples.size());
    if (n == 0) throw DataError("loader: " + index.root.string() + " has no samples");
    const int64_t global = int64_t{cfg.world} * cfg.batch;
    if (cfg.train) {
      bpe = n / global;
      if (bpe == 0) {
        std::ostringstream os;
        os << "loader: " << index.root.string() << " has " << n << " samples, fewer than one global batch ("
           << cfg.world << " workers x " << cfg.batch << ")";
        throw DataError(os.str());
      }
      epoch_samples_ = bpe * cfg.batch;
    } else {
      const int64_t longest = (n + cfg.world - 1) / cfg.world;
      bpe = (longest + cfg.batch - 1) / cfg.batch;
      epoch_samples_ = (n - cfg.rank + cfg.world - 1) / cfg.world;
    }
    const int64_t pixels = int64_t{cfg.image_size} * cfg.image_size * 3;
    ring.resize(static_cast<size_t>(cfg.prefetch) + 1);
    for (Slot& s : ring) {
      s.images = PinnedBuffer(static_cast<size_t>(cfg.batch * pixels));
      s.labels = PinnedBuffer(static_cast<size_t>(cfg.batch) * sizeof(int32_t));
      s.batch.images = s.images.tensor({cfg.batch, cfg.image_size, cfg.image_size, 3}, DType::u8);
      s.batch.labels = s.labels.tensor({cfg.batch}, DType::i32);
    }
    threads.reserve(static_cast<size_t>(cfg.threads));
    for (int t = 0; t < cfg.threads; ++t) threads.emplace_back([this] { run(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(m);
      stop = true;
    }
    work_cv.notify_all();
    for (std::thread& t : threads) t.join();
  }

  std::vector<int64_t> samples_of(const std::vector<int64_t>& ord, int64_t b) const {
    std::vector<int64_t> out;
    const int64_t global = int64_t{cfg.world} * cfg.batch;
    const auto n = static_cast<int64_t>(ord.size());
    for (int k = 0; k < cfg.batch; ++k) {
      const int64_t p = b * global + cfg.rank + int64_t{k} * cfg.world;
      if (p >= n) break;
      out.push_back(ord[static_cast<size_t>(p)]);
    }
    return out;
  }

  Slot& slot_of(int64_t b) { return ring[static_cast<size_t>(b % static_cast<int64_t>(ring.size()))]; }

  // Under the lock: the next sample slot to fill, if the ring has room.
  bool take(Task& t) {
    if (!started) return false;
    while (fill_batch < bpe && fill_batch < released + static_cast<int64_t>(ring.size())) {
      Slot& s = slot_of(fill_batch);
      if (fill_k == 0) {
        s.number = fill_batch;
        s.samples = samples_of(order, fill_batch);
        s.batch.count = static_cast<int>(s.samples.size());
        s.remaining = s.batch.count;
        s.ready = s.remaining == 0;
        s.bad.clear();
        s.error = nullptr;
        int32_t* labels = s.batch.labels.data<int32_t>();
        std::fill(labels, labels + cfg.batch, 0);
        if (s.ready) ready_cv.notify_all();
      }
      if (fill_k < s.batch.count) {
        t = {&s, fill_k, s.samples[static_cast<size_t>(fill_k)]};
        if (++fill_k == s.batch.count) {
          ++fill_batch;
          fill_k = 0;
        }
        return true;
      }
      ++fill_batch;
      fill_k = 0;
    }
    return false;
  }

  void run() {
    auto decoder = std::make_unique<Decoder>();
    std::vector<uint8_t> file;
    Image image;
    std::unique_lock<std::mutex> lock(m);
    while (true) {
      Task t{};
      work_cv.wait(lock, [&] { return stop || take(t); });
      if (stop) return;
      const int64_t ep = epoch;
      ++in_flight;
      lock.unlock();
      std::vector<BadRecord> bad;
      std::exception_ptr error;
      process(t, ep, decoder, file, image, bad, error);
      lock.lock();
      --in_flight;
      Slot& s = *t.slot;
      for (BadRecord& r : bad) s.bad.push_back(std::move(r));
      if (error && !s.error) s.error = error;
      if (--s.remaining == 0) {
        s.ready = true;
        ready_cv.notify_all();
      }
      if (in_flight == 0) idle_cv.notify_all();
    }
  }

  // Decodes sample `j` with the augmentation draws of sample `aug` into slot k of the batch.
  // Throws DataError (bad file) from reading or decoding.
  void decode_into(int64_t j, int64_t aug, int64_t ep, Decoder& decoder, std::vector<uint8_t>& file, Image& image,
                   uint8_t* dst) const {
    const Sample& smp = index.samples[static_cast<size_t>(j)];
    Decoder::read_file(smp.path, file);
    const ImageInfo info = decoder.info(file.data(), file.size());
    const int size = cfg.image_size;
    const CropBox box = cfg.train ? random_resized_crop(info.width, info.height, cfg.augment, cfg.seed,
                                                        static_cast<uint64_t>(ep), static_cast<uint64_t>(aug))
                                  : center_crop(info.width, info.height, size, cfg.augment);
    decode_crop(decoder, file.data(), file.size(), info, box, size, image, dst);
  }

  void process(const Task& t, int64_t ep, std::unique_ptr<Decoder>& decoder, std::vector<uint8_t>& file, Image& image,
               std::vector<BadRecord>& bad, std::exception_ptr& error) const {
    const auto n = static_cast<int64_t>(index.samples.size());
    const int64_t pixels = int64_t{cfg.image_size} * cfg.image_size * 3;
    uint8_t* dst = t.slot->batch.images.data<uint8_t>() + t.k * pixels;
    int32_t* label = t.slot->batch.labels.data<int32_t>() + t.k;
    int64_t current = t.sample;
    try {
      if (testing::loader_fault_hook) testing::loader_fault_hook(t.sample);
      for (int64_t tries = 0; tries < n; ++tries) {
        current = (t.sample + tries) % n;
        try {
          decode_into(current, t.sample, ep, *decoder, file, image, dst);
          *label = index.samples[static_cast<size_t>(current)].label;
          return;
        } catch (const DataError& e) {
          // A fresh decoder after a failure: TurboJPEG 2.1 can leave a handle whose header read
          // failed unable to read the next header, which would make the outcome depend on which
          // thread saw the bad file before.
          decoder = std::make_unique<Decoder>();
          if (tries == 0) bad.push_back({t.k, index.samples[static_cast<size_t>(current)].path.string(), e.what()});
          if (cfg.bad_images == BadImagePolicy::fail) return;
        }
      }
      throw DataError("no sample of " + index.root.string() + " decodes");
    } catch (const std::exception& e) {
      error = std::make_exception_ptr(
          DataError("loader: " + index.samples[static_cast<size_t>(current)].path.string() + ": " + e.what()));
    } catch (...) {
      error = std::make_exception_ptr(
          DataError("loader: " + index.samples[static_cast<size_t>(current)].path.string() + ": unknown exception"));
    }
  }

  void start(int64_t ep, int64_t position) {
    LS_CHECK(ep >= 0 && position >= 0 && position <= bpe,
             "loader: cannot start epoch " << ep << " at batch " << position << " of " << bpe);
    std::vector<int64_t> ord = epoch_order(static_cast<int64_t>(index.samples.size()), cfg.train, cfg.seed, ep);
    std::unique_lock<std::mutex> lock(m);
    started = false;  // hand out nothing more, let the samples in flight land
    idle_cv.wait(lock, [&] { return in_flight == 0; });
    epoch = ep;
    order = std::move(ord);
    for (Slot& s : ring) {
      s.number = -1;
      s.ready = false;
    }
    released = pos = fill_batch = position;
    fill_k = 0;
    epoch_bad = 0;
    started = true;
    lock.unlock();
    work_cv.notify_all();
  }

  const HostBatch& next() {
    if (!started) start(0, 0);
    std::unique_lock<std::mutex> lock(m);
    if (pos >= bpe) {
      std::ostringstream os;
      os << "loader: epoch " << epoch << " has only " << bpe << " batches";
      throw DataError(os.str());
    }
    released = pos;  // the batch the caller held is free again
    work_cv.notify_all();
    Slot& s = slot_of(pos);
    auto done = [&] { return s.number == pos && s.ready; };
    if (!done()) {
      const auto t0 = std::chrono::steady_clock::now();
      ready_cv.wait(lock, done);
      stats.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    ++pos;
    if (s.error) std::rethrow_exception(s.error);
    std::sort(s.bad.begin(), s.bad.end(), [](const BadRecord& a, const BadRecord& b) { return a.k < b.k; });
    for (const BadRecord& r : s.bad) {
      ++stats.bad_images;
      ++epoch_bad;
      if (stats.bad_paths.size() < kMaxBadPaths) stats.bad_paths.push_back(r.path + ": " + r.reason);
    }
    if (!s.bad.empty() && cfg.bad_images == BadImagePolicy::fail)
      throw DataError("bad image " + s.bad.front().path + ": " + s.bad.front().reason + " (--bad-images fail)");
    if (static_cast<double>(epoch_bad) > cfg.max_bad_fraction * static_cast<double>(epoch_samples_)) {
      std::ostringstream os;
      os << epoch_bad << " bad images in epoch " << epoch + 1 << " of " << index.root.string() << ", more than "
         << cfg.max_bad_fraction * 100 << "% of this worker's " << epoch_samples_ << " samples:";
      for (const std::string& p : stats.bad_paths) os << "\n  " << p;
      if (stats.bad_images > static_cast<int64_t>(stats.bad_paths.size()))
        os << "\n  ... and " << stats.bad_images - static_cast<int64_t>(stats.bad_paths.size()) << " more";
      throw DataError(os.str());
    }
    ++stats.batches;
    stats.images += s.batch.count;
    return s.batch;
  }
};

Loader::Loader(FolderIndex index, const LoaderConfig& config)
    : impl_(std::make_unique<Impl>(std::move(index), config)) {}

Loader::~Loader() = default;

int64_t Loader::batches_per_epoch() const { return impl_->bpe; }

void Loader::start_epoch(int64_t epoch, int64_t position) { impl_->start(epoch, position); }

const HostBatch& Loader::next() { return impl_->next(); }

const FolderIndex& Loader::index() const { return impl_->index; }

LoaderStats Loader::stats() const {
  std::lock_guard<std::mutex> lock(impl_->m);
  return impl_->stats;
}

std::vector<int64_t> Loader::batch_samples(int64_t epoch, int64_t b) const {
  const Impl& i = *impl_;
  return i.samples_of(epoch_order(static_cast<int64_t>(i.index.samples.size()), i.cfg.train, i.cfg.seed, epoch), b);
}

}  // namespace lockstep::data
