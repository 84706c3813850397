# lemo: build, set up, test, run.
#   make            build/lemo (CPU engine + server; CUDA backend too where nvcc is found)
#   make setup      install missing system packages (apt-get) and the test tools (npm)
#   make test       setup + build + every test that runs without a GPU (what CI runs)
#   make run        setup + build + start the service on http://127.0.0.1:8080
#   make fuzz       build the libFuzzer targets and run each briefly
#   make asan       unit + integration tests under AddressSanitizer + UBSan (C tests only)
#   make test-gpu   GPU tests (on a machine with an NVIDIA GPU)
#   make bench      ours vs the peer (on a machine with an NVIDIA GPU)

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
# engine/ has a folder per responsibility (README: Source layout); each is on the include path
ENGINE_DIRS := $(patsubst %/,%,$(wildcard engine/*/))
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -D_GNU_SOURCE -fopenmp $(addprefix -I,$(ENGINE_DIRS)) -Ikernels -Iserver \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  += -fopenmp -lmicrohttpd -ljansson -lsqlite3 -lcurl -lcrypto -lpcre2-8 -lopenblas -lz -lm -lpthread -ldl

SRC      := $(wildcard engine/*/*.c kernels/cpu/*.c server/*.c)
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)
LIB_OBJ  := $(filter-out $(BUILD)/obj/engine/commands/main.o,$(OBJ))
TEST_SRC := $(wildcard tests/unit/test_*.c tests/integration/test_*.c)
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# CUDA backend: only where nvcc exists. Without it the CPU build is complete and says so.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CU_SRC := $(wildcard kernels/cuda/*.cu)
ifneq ($(NVCC)$(NO_CUDA),)
ifeq ($(NO_CUDA),)
ifneq ($(CU_SRC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVFLAGS  ?= -O3 -std=c++17 -lineinfo -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 \
            -Xcompiler -fPIC -Ikernels
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
OBJ      += $(CU_OBJ)
CFLAGS   += -DLEMO_CUDA -I$(CUDA_HOME)/include
# The CUDA backend is a shared object beside the binary, loaded on first use (backend_select.c):
# the CUDA libraries cost ~220 MB resident when loaded, which CPU runs and the server should not pay.
CUDA_SO  := $(BUILD)/liblemo_cuda.so
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
endif
endif
endif

.PHONY: all setup test run fuzz asan test-gpu bench clean FORCE
all: $(BUILD)/lemo $(CUDA_SO)
	@if [ -n "$(CU_OBJ)" ]; then echo "built $(BUILD)/lemo with the CUDA backend $(CUDA_SO) (sm_90a + PTX)"; \
	 else echo "built $(BUILD)/lemo, CPU only (no nvcc or no CUDA sources: CUDA backend skipped)"; fi

# The libraries' headers (from their -dev packages): a missing one says how to get it, rather
# than failing on an #include somewhere in the build.
DEV_HEADERS := microhttpd.h jansson.h sqlite3.h curl/curl.h openssl/evp.h pcre2.h cblas.h zlib.h
# Objects depend on the flags they were built with, so switching e.g. NO_CUDA rebuilds them.
$(BUILD)/flags: FORCE
	@for h in $(DEV_HEADERS); do \
	  printf '#define PCRE2_CODE_UNIT_WIDTH 8\n#include <%s>\n' $$h | $(CC) $(CFLAGS) -E -x c - >/dev/null 2>&1 || \
	  { echo "make: the header <$$h> is missing: run 'make setup' (it installs the -dev packages), then make again" >&2; \
	    exit 1; }; done
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(NVFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(NVFLAGS)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblemo.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lemo: $(BUILD)/obj/engine/commands/main.o $(BUILD)/liblemo.a
	$(CC) -o $@ $^ $(LDLIBS)

$(BUILD)/liblemo_cuda.so: $(CU_OBJ)
	$(CC) -shared -o $@ $^ $(CUDA_LIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/liblemo.a tests/check.h $(wildcard tests/unit/*.h tests/integration/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/liblemo.a $(LDLIBS)

# GPU tests and the benchmark: programs under tests/gpu and bench/, linked like the unit tests.
GPU_TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/gpu/test_*.c))
BENCHES   := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

# (-Itests: bench/api_load.c drives the server with the integration tests' load generator)
$(BUILD)/bench/%: bench/%.c $(BUILD)/liblemo.a $(CU_OBJ) $(wildcard tests/integration/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/liblemo.a $(CU_OBJ) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(BUILD)/liblemo.a $(CU_OBJ) tests/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/liblemo.a $(CU_OBJ) $(LDLIBS) $(CUDA_LIBS)

test-gpu:
	@$(MAKE) --no-print-directory all $(GPU_TESTS)
	@bash tests/gpu/run.sh $(BUILD)

bench:
	@$(MAKE) --no-print-directory all $(BENCHES)
	@bash bench/run.sh $(BUILD)

setup:
	@bash scripts/setup.sh

test: setup
	@$(MAKE) --no-print-directory all $(TESTS)
	@bash tests/run.sh $(BUILD)

run: setup
	@$(MAKE) --no-print-directory all
	@bash scripts/run.sh $(BUILD)

fuzz:
	@bash fuzz/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan NO_CUDA=1 OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer" \
	  LDLIBS_EXTRA= all $(patsubst $(BUILD)/%,build-asan/%,$(TESTS)) \
	  LDLIBS="-fsanitize=address,undefined -fopenmp -lmicrohttpd -ljansson -lsqlite3 -lcurl -lcrypto -lpcre2-8 -lopenblas -lz -lm -lpthread"
	@ASAN_OPTIONS=detect_leaks=0 bash tests/run.sh build-asan unit/
	@ASAN_OPTIONS=detect_leaks=0 bash tests/run.sh build-asan integration/

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJ:.o=.d)
