#include "janitor.h"

#include <unistd.h>

#include <algorithm>

#include "handle.h"

namespace shmkv::internal {

int Janitor::Acquire(shmkv_t* kv, const JanitorOptions& options, std::unique_ptr<Janitor>* out,
                     std::string* why) {
  if (kv == nullptr) {
    *why = "handle is NULL";
    return SHMKV_EINVAL;
  }
  if (kv->read_only) {
    *why = "a read-only handle cannot be the janitor";
    return SHMKV_EREADONLY;
  }
  Ctx c{kv, kv->v, nullptr, 0};
  if (int rc = Enter(kv, true, &c)) {  // registers this process
    *why = LastError();
    return rc;
  }
  if (!TryLockByte(kv->seg->lock_fd(), kJanitorLockByte)) {
    const uint64_t pid = JanitorPid(kv);
    *why = "segment '" + kv->seg->name() + "' already has a janitor" +
           (pid ? " (pid " + std::to_string(pid) + ")" : std::string());
    return SHMKV_EBUSY;
  }
  StoreRelease(&kv->v.hdr->janitor_pid, static_cast<uint64_t>(::getpid()));
  out->reset(new Janitor(kv, options));
  return 0;
}

Janitor::~Janitor() {
  StoreRelease(&kv_->v.hdr->janitor_pid, 0);
  UnlockByte(kv_->seg->lock_fd(), kJanitorLockByte);
}

uint64_t JanitorPid(shmkv_t* kv) { return LoadAcquire(&kv->v.hdr->janitor_pid); }

int Janitor::Tick(TickReport* report) {
  *report = TickReport{};
  const uint64_t start = MonotonicNs(true);
  Ctx c{kv_, kv_->v, nullptr, 0};
  if (int rc = Enter(kv_, true, &c)) return rc;
  const View& v = c.v;

  // Dead processes: their OFD locks are gone.
  uint32_t recovered = 0;
  if (int rc = RecoverDead(kv_, &recovered)) return rc;
  report->recovered_processes = recovered;

  // Expiry sweep: a slice sized so that a full pass takes sweep_period.
  const uint64_t total = v.n_buckets * 4;
  const uint64_t ticks = std::max<uint64_t>(
      1, static_cast<uint64_t>(options_.sweep_period /
                               std::max(options_.interval, std::chrono::milliseconds(1))));
  const uint64_t slice = (total + ticks - 1) / ticks;
  report->expired = SweepExpired(c, sweep_cursor_, slice);
  report->slots_swept = std::min(slice, total - sweep_cursor_);
  sweep_cursor_ += slice;
  if (sweep_cursor_ >= total) {
    sweep_cursor_ = 0;
    report->pass_completed = true;
  }

  // Free-memory watermarks, only once no unassigned page is left (until
  // then new pages serve writers without evicting anything).
  bool any_unassigned = false;
  for (uint64_t p = 0; p < v.n_pages && !any_unassigned; ++p)
    any_unassigned = pword::Cls1(LoadRelaxed(&v.ptab[p])) == 0;
  if (!any_unassigned) {
    for (const ClassUsage& u : GetClassUsage(kv_)) {
      const uint64_t want =
          static_cast<uint64_t>(options_.free_watermark * static_cast<double>(u.blocks));
      const uint64_t free_blocks = u.blocks - std::min(u.blocks, u.blocks_used);
      if (want == 0 || free_blocks >= want) continue;
      uint64_t last_page = 0;
      // Bounded per tick: clients never wait for the janitor anyway.
      report->evicted +=
          EvictClass(c, u.class_index, std::min<uint64_t>(want - free_blocks, 256), &last_page);
    }
  }

  // Allocation hints of a slice of pages.
  const uint64_t pages = (v.n_pages + ticks - 1) / ticks;
  RebuildHints(v, hint_cursor_, pages);
  report->pages_hinted = std::min(pages, v.n_pages - hint_cursor_);
  hint_cursor_ = hint_cursor_ + pages >= v.n_pages ? 0 : hint_cursor_ + pages;

  report->duration_ns = MonotonicNs(true) - start;
  return 0;
}

std::vector<ClassUsage> GetClassUsage(shmkv_t* kv) {
  const View& v = kv->v;
  std::vector<ClassUsage> out;
  std::vector<int64_t> index(v.n_classes, -1);
  for (uint64_t p = 0; p < v.n_pages; ++p) {
    const uint64_t w = LoadRelaxed(&v.ptab[p]);
    const uint64_t cls1 = pword::Cls1(w);
    if (cls1 == 0 || cls1 > v.n_classes || pword::St(w) != pword::kNormal) continue;
    const uint32_t cls = static_cast<uint32_t>(cls1 - 1);
    if (index[cls] < 0) {
      index[cls] = static_cast<int64_t>(out.size());
      out.push_back({cls, v.class_size[cls], 0, 0, 0});
    }
    ClassUsage& u = out[static_cast<size_t>(index[cls])];
    u.pages += v.class_pages[cls];
    u.blocks += v.class_bpp[cls];
    u.blocks_used += v.class_bpp[cls] - FreeHints(v, p, cls);
  }
  std::sort(out.begin(), out.end(),
            [](const ClassUsage& a, const ClassUsage& b) { return a.class_index < b.class_index; });
  return out;
}

}  // namespace shmkv::internal
