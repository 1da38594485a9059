/* SPDX-License-Identifier: MIT */
/*
 * A VMM in miniature, built by `make check-install` against a staged
 * install through `pkg-config ccvm` alone: proves that the installed
 * headers, libccvm.so or libccvm.a, and ccvm.pc are enough, with no
 * source tree around.  Built twice: linked to the shared library, then to
 * the archive alone.
 */
#include <stdio.h>
#include <string.h>

#include <ccvm/ccvm.h>

int main(void)
{
	struct ccvm_platform_opts opts =
		CCVM_OPTS_INIT(struct ccvm_platform_opts, .backend = "mock");
	struct ccvm_platform *platform;
	struct ccvm_vm *vm;
	int err;

	/* Installed headers and library must come from the same release. */
	if (strcmp(ccvm_version(), CCVM_VERSION_STRING) != 0) {
		fprintf(stderr, "consumer: library %s, headers %s\n",
			ccvm_version(), CCVM_VERSION_STRING);
		return 1;
	}
	if (ccvm_version_number() != CCVM_VERSION_NUMBER) {
		fprintf(stderr, "consumer: library 0x%06x, headers 0x%06x\n",
			ccvm_version_number(), (unsigned int)CCVM_VERSION_NUMBER);
		return 1;
	}

	err = ccvm_platform_create(&opts, &platform);
	if (err) {
		fprintf(stderr, "consumer: ccvm_platform_create: %s\n",
			ccvm_strerror(err));
		return 1;
	}

	err = ccvm_vm_create(platform, NULL, &vm);
	if (err) {
		fprintf(stderr, "consumer: ccvm_vm_create: %s\n",
			ccvm_strerror(err));
		goto err_destroy_platform;
	}

	err = ccvm_vm_close(vm);
	if (err) {
		fprintf(stderr, "consumer: ccvm_vm_close: %s\n",
			ccvm_strerror(err));
		goto err_destroy_platform;
	}

	err = ccvm_platform_destroy(platform);
	if (err) {
		fprintf(stderr, "consumer: ccvm_platform_destroy: %s\n",
			ccvm_strerror(err));
		return 1;
	}

	printf("consumer ok\n");
	return 0;

err_destroy_platform:
	ccvm_platform_destroy(platform);
	return 1;
}
