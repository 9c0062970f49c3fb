/* deblurkit report: sortable tables, before/after sliders, linked crops, current-image marker. */
(function () {
  "use strict";

  /* ---- sortable tables: a button in each sortable heading; missing values always sort last ---- */
  function sortKey(cell, kind) {
    if (!cell || !cell.hasAttribute("data-value")) {
      return null;
    }
    var raw = cell.getAttribute("data-value");
    if (kind === "number") {
      var number = parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw.toLowerCase();
  }

  function sortBy(table, heading) {
    var col = Number(heading.getAttribute("data-col"));
    var kind = heading.getAttribute("data-type");
    var direction = heading.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var sign = direction === "ascending" ? 1 : -1;
    table.querySelectorAll("thead th[aria-sort]").forEach(function (other) {
      other.removeAttribute("aria-sort");
    });
    heading.setAttribute("aria-sort", direction);
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, index) {
      return { row: row, index: index, key: sortKey(row.cells[col], kind) };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        if (a.key === b.key) {
          return a.index - b.index;
        }
        return a.key === null ? 1 : -1;
      }
      if (a.key < b.key) {
        return -sign;
      }
      if (a.key > b.key) {
        return sign;
      }
      return a.index - b.index;
    });
    rows.forEach(function (entry) {
      body.appendChild(entry.row);
    });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-col] button").forEach(function (button) {
      button.addEventListener("click", function () {
        sortBy(table, button.parentElement);
      });
    });
  });

  /* ---- before/after slider: the left layer is clipped at the split; range input, click or drag ---- */
  function setupCompare(box) {
    var stage = box.querySelector(".stage");
    var range = box.querySelector(".split-range");
    var left = box.querySelector(".layer-left");
    var right = box.querySelector(".layer-right");
    var line = box.querySelector(".split");
    var pickLeft = box.querySelector(".pick-left");
    var pickRight = box.querySelector(".pick-right");
    var dragging = false;

    function label(select) {
      return select.options[select.selectedIndex].text;
    }

    function apply() {
      var value = Number(range.value);
      left.style.clipPath = "inset(0 " + (100 - value) + "% 0 0)";
      line.style.left = value + "%";
      range.setAttribute("aria-valuetext", value + "%: " + label(pickLeft) + " left, " + label(pickRight) + " right");
    }

    function moveTo(event) {
      var rect = stage.getBoundingClientRect();
      if (rect.width > 0) {
        var value = Math.round(((event.clientX - rect.left) / rect.width) * 100);
        range.value = String(Math.max(0, Math.min(100, value)));
        apply();
      }
    }

    function pick(select, image, tag) {
      var option = select.options[select.selectedIndex];
      image.src = option.getAttribute("data-src");
      image.alt = box.getAttribute("data-name") + ": " + option.text;
      box.querySelector(tag).textContent = option.text;
      apply();
    }

    range.addEventListener("input", apply);
    pickLeft.addEventListener("change", function () {
      pick(pickLeft, left, ".tag-left");
    });
    pickRight.addEventListener("change", function () {
      pick(pickRight, right, ".tag-right");
    });
    stage.addEventListener("pointerdown", function (event) {
      dragging = true;
      stage.setPointerCapture(event.pointerId);
      moveTo(event);
      event.preventDefault();
    });
    stage.addEventListener("pointermove", function (event) {
      if (dragging) {
        moveTo(event);
      }
    });
    ["pointerup", "pointercancel", "lostpointercapture"].forEach(function (type) {
      stage.addEventListener(type, function () {
        dragging = false;
      });
    });
    apply();
  }

  document.querySelectorAll(".compare").forEach(setupCompare);

  /* ---- crops: one marker follows the pointer over any crop, at the same spot in all of them ---- */
  document.querySelectorAll(".crops").forEach(function (crops) {
    crops.addEventListener("pointermove", function (event) {
      var frame = event.target.closest(".crop-frame");
      if (!frame) {
        crops.classList.remove("pointing");
        return;
      }
      var rect = frame.getBoundingClientRect();
      crops.style.setProperty("--fx", String((event.clientX - rect.left) / rect.width));
      crops.style.setProperty("--fy", String((event.clientY - rect.top) / rect.height));
      crops.classList.add("pointing");
    });
    crops.addEventListener("pointerleave", function () {
      crops.classList.remove("pointing");
    });
  });

  var zoom = document.getElementById("crop-zoom");
  if (zoom) {
    zoom.addEventListener("change", function () {
      document.documentElement.style.setProperty("--zoom", zoom.value);
    });
  }

  /* ---- thumbnail strip: mark the image in view, keep its thumbnail visible ---- */
  var strip = document.querySelector(".strip");
  var links = {};
  if (strip) {
    strip.querySelectorAll("a[href^='#']").forEach(function (link) {
      links[link.getAttribute("href").slice(1)] = link;
    });
  }
  if (strip && "IntersectionObserver" in window) {
    var current = null;
    var observer = new IntersectionObserver(
      function (entries) {
        entries.forEach(function (entry) {
          if (!entry.isIntersecting) {
            return;
          }
          var link = links[entry.target.id];
          if (!link || link === current) {
            return;
          }
          if (current) {
            current.removeAttribute("aria-current");
          }
          current = link;
          link.setAttribute("aria-current", "true");
          var item = link.parentElement;
          if (item.offsetLeft < strip.scrollLeft || item.offsetLeft + item.offsetWidth > strip.scrollLeft + strip.clientWidth) {
            strip.scrollLeft = item.offsetLeft - strip.clientWidth / 2 + item.offsetWidth / 2;
          }
        });
      },
      { rootMargin: "-30% 0px -60% 0px" }
    );
    document.querySelectorAll("section.image").forEach(function (section) {
      observer.observe(section);
    });
  }
})();
