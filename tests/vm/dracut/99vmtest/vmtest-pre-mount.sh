#!/bin/sh
# Smoke-test-only pre-mount hook (plain dracut initrd): the initqueue has brought the network up
# (rd.neednet=1) and activated LVM by now.
/bin/vmtest-step dracut
