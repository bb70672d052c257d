// Vector <-> scalar pipe synchronisation inside one AI core: the kernels mix
// vector instructions with scalar GetValue/SetValue on the same unified buffer.
#pragma once

#include "kernel_operator.h"

namespace mft_ascend {

__aicore__ inline void VectorToScalar() {
  event_t e = static_cast<event_t>(GetTPipePtr()->FetchEventID(AscendC::HardEvent::V_S));
  AscendC::SetFlag<AscendC::HardEvent::V_S>(e);
  AscendC::WaitFlag<AscendC::HardEvent::V_S>(e);
}

__aicore__ inline void ScalarToVector() {
  event_t e = static_cast<event_t>(GetTPipePtr()->FetchEventID(AscendC::HardEvent::S_V));
  AscendC::SetFlag<AscendC::HardEvent::S_V>(e);
  AscendC::WaitFlag<AscendC::HardEvent::S_V>(e);
}

// Range of tasks [begin, begin + count) of this core under the host's even split.
__aicore__ inline void CoreRange(uint32_t perCore, uint32_t bigCores, uint32_t *begin, uint32_t *count) {
  const uint32_t idx = AscendC::GetBlockIdx();
  *begin = idx * perCore + (idx < bigCores ? idx : bigCores);
  *count = perCore + (idx < bigCores ? 1 : 0);
}

}  // namespace mft_ascend
