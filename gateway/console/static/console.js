"use strict";
// Placeholder until the console page lands.
document.getElementById("app").textContent = "propgw console";
