// Entry for pages without their own script: the shared stylesheet, and the home page's project form.
import "./style.css";
import "./project/manage.css";
import { setupProjectCreate } from "./home/create-project";

const createForm = document.getElementById("project-create");
if (createForm instanceof HTMLFormElement) setupProjectCreate(createForm);
