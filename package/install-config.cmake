# Install-time part of edgesync's install rules (install(SCRIPT) from the
# top-level CMakeLists.txt, which sets EDGESYNC_SOURCE_DIR, EDGESYNC_BINARY_DIR
# and GNUInstallDirs' EDGESYNC_{BINDIR,SYSCONFDIR,DATADIR,DOCDIR} first).
#
# The configuration directory follows the prefix, which is known only now
# (cmake --install --prefix, cpack): /etc for the prefix /usr (the package),
# <prefix>/etc otherwise, so installing into a scratch prefix never writes to
# this machine's /etc. An absolute CMAKE_INSTALL_SYSCONFDIR wins. The unit's
# paths are rewritten to match the prefix (unchanged for /usr).

string(REGEX REPLACE "/+$" "" _es_prefix "${CMAKE_INSTALL_PREFIX}")
macro(_es_dir out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}")
  else()
    set(${out} "${_es_prefix}/${dir}")
  endif()
endmacro()
if(IS_ABSOLUTE "${EDGESYNC_SYSCONFDIR}")
  set(_es_etc "${EDGESYNC_SYSCONFDIR}")
elseif(_es_prefix STREQUAL "/usr")
  set(_es_etc "/${EDGESYNC_SYSCONFDIR}")
else()
  set(_es_etc "${_es_prefix}/${EDGESYNC_SYSCONFDIR}")
endif()
_es_dir(_es_bindir "${EDGESYNC_BINDIR}")
_es_dir(_es_datadir "${EDGESYNC_DATADIR}")
_es_dir(_es_docdir "${EDGESYNC_DOCDIR}")

# A configuration file (a conffile of the package): a hand install never
# replaces one that differs (edited; the shipped edgesync.toml is also in
# <docdir>/examples). The package's own are fresh; dpkg handles conffiles.
macro(_es_install_config src dir name)
  set(_es_dest "$ENV{DESTDIR}${dir}/${name}")
  set(_es_keep FALSE)
  if(EXISTS "${_es_dest}")
    file(SHA256 "${src}" _es_new)
    file(SHA256 "${_es_dest}" _es_old)
    if(NOT _es_new STREQUAL _es_old)
      set(_es_keep TRUE)
    endif()
  endif()
  if(_es_keep)
    message(STATUS "Keeping: ${_es_dest} (it differs from the shipped one: not replaced)")
  else()
    file(INSTALL DESTINATION "${dir}" TYPE FILE RENAME "${name}" FILES "${src}")
  endif()
endmacro()

_es_install_config("${EDGESYNC_SOURCE_DIR}/examples/edgesync.toml" "${_es_etc}/edgesync" edgesync.toml)
_es_install_config("${EDGESYNC_SOURCE_DIR}/systemd/mosquitto-edgesync.conf" "${_es_etc}/mosquitto/conf.d"
                   edgesync.conf)

# <etc>/edgesync/profiles -> the shipped fleet profiles, relative, so that
# `profile = "profiles/payment-terminal.toml"` works in /etc/edgesync and in
# a scratch root alike.
file(RELATIVE_PATH _es_rel "${_es_etc}/edgesync" "${_es_datadir}/edgesync/profiles")
set(_es_link "$ENV{DESTDIR}${_es_etc}/edgesync/profiles")
if(EXISTS "${_es_link}" AND NOT IS_SYMLINK "${_es_link}")
  message(STATUS "Keeping: ${_es_link} (not a symbolic link: not replaced)")
else()
  message(STATUS "Installing: ${_es_link} -> ${_es_rel}")
  file(CREATE_LINK "${_es_rel}" "${_es_link}" SYMBOLIC)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${_es_link}")
endif()

# The systemd unit, its paths made to match the prefix.
file(READ "${EDGESYNC_SOURCE_DIR}/systemd/edgesync.service" _es_unit)
string(REPLACE "/usr/bin/edgesync" "${_es_bindir}/edgesync" _es_unit "${_es_unit}")
string(REPLACE "/etc/edgesync/" "${_es_etc}/edgesync/" _es_unit "${_es_unit}")
string(REPLACE "/usr/share/doc/edgesync/" "${_es_docdir}/" _es_unit "${_es_unit}")
string(REPLACE "/usr/lib/systemd/system" "${_es_prefix}/lib/systemd/system" _es_unit "${_es_unit}")
set(_es_tmp "${EDGESYNC_BINARY_DIR}/package/unit")
file(MAKE_DIRECTORY "${_es_tmp}")
file(WRITE "${_es_tmp}/edgesync.service" "${_es_unit}")
file(INSTALL DESTINATION "${_es_prefix}/lib/systemd/system" TYPE FILE FILES "${_es_tmp}/edgesync.service")
