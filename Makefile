# make deb    build vidpipe_<version>_all.deb (in build/deb) and copy it to ./vidpipe.deb
# make lint   run lintian on it

VERSION := $(shell dpkg-parsechangelog -S Version 2>/dev/null)
BUILD := build/deb

.PHONY: deb lint clean

deb:
	rm -rf $(BUILD) && mkdir -p $(BUILD)/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(BUILD)/src
	# the distribution Python, whatever else (pyenv, venvs) is first on PATH
	cd $(BUILD)/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b --no-sign
	cp $(BUILD)/vidpipe_$(VERSION)_all.deb vidpipe.deb
	@echo "built $(BUILD)/vidpipe_$(VERSION)_all.deb -> ./vidpipe.deb"

lint: deb
	env PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian --fail-on error,warning $(BUILD)/vidpipe_$(VERSION)_all.deb

clean:
	rm -rf build vidpipe.deb
