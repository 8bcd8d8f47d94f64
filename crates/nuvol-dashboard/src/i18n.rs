//! Every string the dashboard shows, in one place, in English, Catalan and
//! Spanish (Cloudy shipped all three). A page picks the language from the
//! `lang` cookie (the switcher), else from `Accept-Language`, else English.
//!
//! Written by hand rather than with a gettext/Fluent crate: three fixed
//! languages of short strings, checked at compile time (a missing
//! translation does not build), and nothing to load at run time.

/// A language the dashboard ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ca,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Ca, Lang::Es];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ca => "ca",
            Lang::Es => "es",
        }
    }

    /// The language's name in itself, for the switcher.
    pub fn native(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ca => "Català",
            Lang::Es => "Español",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code.split(['-', '_']).next()?.trim();
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The best shipped language of an `Accept-Language` header (q-values
    /// honoured; malformed parts skipped).
    pub fn negotiate(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').take(32).enumerate() {
            let mut it = part.split(';');
            let Some(tag) = it.next().map(str::trim).filter(|t| !t.is_empty()) else {
                continue;
            };
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|v| v.parse::<f32>().ok())
                .unwrap_or(1.0);
            if !(q > 0.0 && q <= 1.0) {
                continue;
            }
            let Some(lang) = Lang::from_code(tag) else {
                continue;
            };
            // Highest q wins; the earlier on a tie.
            if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                best = Some((q, i, lang));
            }
        }
        best.map(|(_, _, l)| l)
    }
}

macro_rules! strings {
    ($($key:ident => $en:literal, $ca:literal, $es:literal;)*) => {
        /// A string of the dashboard; [`T::get`] gives it in a language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum T { $($key,)* }

        impl T {
            pub const ALL: &'static [T] = &[$(T::$key,)*];

            pub fn get(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $(
                        (T::$key, Lang::En) => $en,
                        (T::$key, Lang::Ca) => $ca,
                        (T::$key, Lang::Es) => $es,
                    )*
                }
            }
        }
    };
}

strings! {
    AppName => "nuvol", "nuvol", "nuvol";
    SkipToContent => "Skip to content", "Salta al contingut", "Saltar al contenido";
    MainNav => "Main", "Principal", "Principal";
    Overview => "Overview", "Resum", "Resumen";
    Nodes => "Nodes", "Nodes", "Nodos";
    Services => "Services", "Serveis", "Servicios";
    Events => "Events", "Esdeveniments", "Eventos";
    Settings => "Settings", "Configuració", "Configuración";
    Login => "Log in", "Inicia la sessió", "Iniciar sesión";
    Logout => "Log out", "Tanca la sessió", "Cerrar sesión";
    LoggedIn => "Logged in", "Sessió iniciada", "Sesión iniciada";
    Language => "Language", "Llengua", "Idioma";
    Change => "Change", "Canvia", "Cambiar";
    ThisNode => "This node", "Aquest node", "Este nodo";
    Cluster => "Cluster", "Clúster", "Clúster";
    RecentEvents => "Recent events", "Esdeveniments recents", "Eventos recientes";
    AllEvents => "All events", "Tots els esdeveniments", "Todos los eventos";
    Name => "Name", "Nom", "Nombre";
    Address => "Address", "Adreça", "Dirección";
    Uptime => "Uptime", "Temps en marxa", "Tiempo activo";
    Version => "Version", "Versió", "Versión";
    Load => "Load", "Càrrega", "Carga";
    Cpu => "CPU", "CPU", "CPU";
    Memory => "Memory", "Memòria", "Memoria";
    Disk => "Disk", "Disc", "Disco";
    Temperature => "Temperature", "Temperatura", "Temperatura";
    Board => "Board", "Placa", "Placa";
    Unknown => "unknown", "desconegut", "desconocido";
    Of => "of", "de", "de";
    Free => "free", "lliure", "libre";
    Members => "Members", "Membres", "Miembros";
    Alive => "alive", "viu", "vivo";
    Failed => "failed", "caigut", "caído";
    Left => "left", "ha marxat", "se fue";
    Leaving => "leaving", "marxant", "saliendo";
    Passing => "passing", "correcte", "correcto";
    Warning => "warning", "avís", "aviso";
    Critical => "critical", "crític", "crítico";
    Unavailable => "unavailable", "no disponible", "no disponible";
    Status => "Status", "Estat", "Estado";
    Tags => "Tags", "Etiquetes", "Etiquetas";
    Protocol => "Protocol", "Protocol", "Protocolo";
    Rtt => "RTT", "RTT", "RTT";
    Quality => "Quality", "Qualitat", "Calidad";
    ClusterMap => "Network map: nodes placed by their network coordinates; near means a short round trip", "Mapa de la xarxa: nodes situats per les seves coordenades de xarxa; a prop vol dir una anada i tornada curta", "Mapa de la red: nodos situados por sus coordenadas de red; cerca significa un viaje de ida y vuelta corto";
    NoCoordinates => "No network coordinates yet.", "Encara no hi ha coordenades de xarxa.", "Aún no hay coordenadas de red.";
    Filter => "Filter", "Filtra", "Filtrar";
    Search => "Search", "Cerca", "Buscar";
    SortBy => "Sort by", "Ordena per", "Ordenar por";
    All => "All", "Tots", "Todos";
    Description => "Description", "Descripció", "Descripción";
    Node => "Node", "Node", "Nodo";
    Ip => "IP", "IP", "IP";
    Port => "Port", "Port", "Puerto";
    MicroCloud => "µcloud", "µcloud", "µcloud";
    Txt => "TXT", "TXT", "TXT";
    Health => "Health", "Salut", "Salud";
    DnsName => "DNS name", "Nom DNS", "Nombre DNS";
    Action => "Action", "Acció", "Acción";
    Open => "Open", "Obre", "Abrir";
    NoServices => "No services match.", "Cap servei coincideix.", "Ningún servicio coincide.";
    NoNodes => "No nodes match.", "Cap node coincideix.", "Ningún nodo coincide.";
    NoEvents => "No events yet.", "Encara no hi ha esdeveniments.", "Aún no hay eventos.";
    Publish => "Publish a service on this node", "Publica un servei en aquest node", "Publicar un servicio en este nodo";
    PublishButton => "Publish", "Publica", "Publicar";
    Unpublish => "Unpublish", "Retira", "Retirar";
    Type => "Type", "Tipus", "Tipo";
    TxtHelp => "key=value pairs joined by &, e.g. path=/&v=1", "parells clau=valor units per &, p. ex. path=/&v=1", "pares clave=valor unidos por &, p. ej. path=/&v=1";
    SetTag => "Set a tag", "Posa una etiqueta", "Poner una etiqueta";
    Key => "Key", "Clau", "Clave";
    Value => "Value", "Valor", "Valor";
    Save => "Save", "Desa", "Guardar";
    Delete => "Delete", "Esborra", "Borrar";
    UserEvent => "Send a user event", "Envia un esdeveniment d'usuari", "Enviar un evento de usuario";
    Payload => "Payload", "Contingut", "Contenido";
    Coalesce => "Coalesce", "Agrupa", "Agrupar";
    Send => "Send", "Envia", "Enviar";
    RunQuery => "Run a query", "Fes una consulta", "Hacer una consulta";
    Timeout => "Timeout", "Temps d'espera", "Tiempo de espera";
    TimeoutHelp => "e.g. 5s (at most 60s)", "p. ex. 5s (com a molt 60s)", "p. ej. 5s (como mucho 60s)";
    OnlyNodes => "Only these nodes (comma-separated, optional)", "Només aquests nodes (separats per comes, opcional)", "Solo estos nodos (separados por comas, opcional)";
    Run => "Run", "Executa", "Ejecutar";
    Query => "Query", "Consulta", "Consulta";
    Acks => "Acks", "Confirmacions", "Confirmaciones";
    Responses => "Responses", "Respostes", "Respuestas";
    QueryRunning => "Running…", "En curs…", "En curso…";
    QueryDone => "Done.", "Fet.", "Hecho.";
    JoinNode => "Join another node", "Uneix-te a un altre node", "Unirse a otro nodo";
    Join => "Join", "Uneix", "Unir";
    JoinHelp => "IP:PORT, HOST or HOST:PORT", "IP:PORT, HOST o HOST:PORT", "IP:PORT, HOST o HOST:PORT";
    Scan => "Scan the quality of all nodes", "Mesura la qualitat de tots els nodes", "Medir la calidad de todos los nodos";
    ScanNever => "Not scanned yet.", "Encara no s'ha mesurat.", "Aún no se ha medido.";
    Bootstrap => "Bootstrap addresses", "Adreces d'arrencada", "Direcciones de arranque";
    BootstrapHelp => "One per line. Saved on this node and joined now and at every start.", "Una per línia. Es desen en aquest node i s'hi uneix ara i a cada arrencada.", "Una por línea. Se guardan en este nodo y se une ahora y en cada arranque.";
    Token => "API token", "Testimoni de l'API", "Token de la API";
    TokenHelp => "The contents of the file api-token in the agent's data directory.", "El contingut del fitxer api-token del directori de dades de l'agent.", "El contenido del fichero api-token del directorio de datos del agente.";
    BadToken => "That is not this node's API token.", "Aquest no és el testimoni de l'API d'aquest node.", "Ese no es el token de la API de este nodo.";
    TooManyAttempts => "Too many attempts; wait a minute.", "Massa intents; espera un minut.", "Demasiados intentos; espera un minuto.";
    LoginToAct => "Log in to make changes.", "Inicia la sessió per fer canvis.", "Inicia sesión para hacer cambios.";
    NotAllowed => "This address may not view the dashboard. Log in with the API token.", "Aquesta adreça no pot veure el tauler. Inicia la sessió amb el testimoni de l'API.", "Esta dirección no puede ver el panel. Inicia sesión con el token de la API.";
    NotFound => "Page not found", "No s'ha trobat la pàgina", "Página no encontrada";
    NotFoundText => "There is no such page here.", "Aquí no hi ha cap pàgina així.", "Aquí no hay ninguna página así.";
    NoSuchNode => "No such node.", "No existeix aquest node.", "No existe ese nodo.";
    BackHome => "Back to the overview", "Torna al resum", "Volver al resumen";
    Done => "Done.", "Fet.", "Hecho.";
    Error => "Error", "Error", "Error";
    FixErrors => "Please fix the fields marked below.", "Corregeix els camps marcats a sota.", "Corrige los campos marcados abajo.";
    Published => "Service published.", "Servei publicat.", "Servicio publicado.";
    Unpublished => "Service unpublished.", "Servei retirat.", "Servicio retirado.";
    TagSaved => "Tag saved.", "Etiqueta desada.", "Etiqueta guardada.";
    TagDeleted => "Tag deleted.", "Etiqueta esborrada.", "Etiqueta borrada.";
    EventSent => "Event sent.", "Esdeveniment enviat.", "Evento enviado.";
    Joined => "Joined.", "Unit.", "Unido.";
    Scanned => "Scan finished.", "Mesura acabada.", "Medición terminada.";
    BootstrapSaved => "Bootstrap addresses saved.", "Adreces d'arrencada desades.", "Direcciones de arranque guardadas.";
    Required => "This field is required.", "Aquest camp és obligatori.", "Este campo es obligatorio.";
    Live => "Live", "En directe", "En directo";
    Offline => "Updates paused; reconnecting…", "Actualitzacions aturades; reconnectant…", "Actualizaciones en pausa; reconectando…";
    Time => "Time", "Hora", "Hora";
    Event => "Event", "Esdeveniment", "Evento";
    Details => "Details", "Detalls", "Detalles";
    Count => "Count", "Nombre", "Número";
    Yes => "yes", "sí", "sí";
    SyncFolders => "Replicated folders", "Carpetes replicades", "Carpetas replicadas";
    SyncFolder => "Folder", "Carpeta", "Carpeta";
    SyncType => "Type here", "Tipus aquí", "Tipo aquí";
    SyncFollows => "follows app", "segueix l'app", "sigue la app";
    SyncAppHere => "runs here", "funciona aquí", "funciona aquí";
    SyncAppElsewhere => "runs on another node", "funciona en un altre node", "funciona en otro nodo";
    SyncAppNowhere => "runs nowhere: mode kept", "no funciona enlloc: es manté el mode", "no funciona en ningún sitio: se mantiene el modo";
    SyncInSync => "In sync", "Sincronitzada", "Sincronizada";
    SyncNeed => "Files needed", "Fitxers pendents", "Archivos pendientes";
    SyncConflicts => "Conflicts", "Conflictes", "Conflictos";
    SyncShared => "Shared with", "Compartida amb", "Compartida con";
    SyncthingRunning => "Syncthing running", "Syncthing en marxa", "Syncthing en marcha";
    SyncthingDown => "Syncthing not running", "Syncthing aturat", "Syncthing detenido";
    SyncNoFolders => "No folders are shared by this node.", "Aquest node no comparteix cap carpeta.", "Este nodo no comparte ninguna carpeta.";
    No => "no", "no", "no";
    Vips => "Floating IPs", "IP flotants", "IP flotantes";
    VipAddress => "Address", "Adreça", "Dirección";
    VipState => "State", "Estat", "Estado";
    VipMaster => "master", "mestre", "maestro";
    VipBackup => "backup", "reserva", "reserva";
    VipFault => "fault", "fallada", "fallo";
    VipInit => "starting", "iniciant", "iniciando";
    OwnedBy => "set by", "posada per", "puesta por";
    Ssh => "SSH command", "Ordre SSH", "Orden SSH";
    SyncthingDevice => "Syncthing device", "Dispositiu Syncthing", "Dispositivo Syncthing";
    AddDevice => "Add this device", "Afegeix aquest dispositiu", "Añadir este dispositivo";
    PermissionView => "view", "veure", "ver";
    PermissionOperate => "operate", "operar", "operar";
    PermissionAdmin => "administer", "administrar", "administrar";
    Forbidden => "Not allowed", "No permès", "No permitido";
    Components => "Components", "Components", "Componentes";
    Delegate => "delegate", "delegat", "delegado";
    NameTooLong => "At most 128 characters, no control characters.", "Com a molt 128 caràcters, sense caràcters de control.", "Como mucho 128 caracteres, sin caracteres de control.";
    ReservedName => "Names starting with _serf_ or _nuvol_ belong to the agents.", "Els noms que comencen per _serf_ o _nuvol_ són dels agents.", "Los nombres que empiezan por _serf_ o _nuvol_ son de los agentes.";
    PayloadTooLong => "At most {} bytes.", "Com a molt {} bytes.", "Como mucho {} bytes.";
    TimeoutRange => "More than 0s and at most 60s.", "Més de 0s i com a molt 60s.", "Más de 0s y como mucho 60s.";
    TooManyNodes => "At most 64 names of up to 128 characters each.", "Com a molt 64 noms de fins a 128 caràcters cadascun.", "Como mucho 64 nombres de hasta 128 caracteres cada uno.";
    UnknownValue => "Unknown value {}.", "Valor desconegut {}.", "Valor desconocido {}.";
    CannotSortBy => "Cannot sort by {}.", "No es pot ordenar per {}.", "No se puede ordenar por {}.";
    BadOrder => "The order is asc or desc, not {}.", "L'ordre és asc o desc, no {}.", "El orden es asc o desc, no {}.";
    NotAType => "{} is not a service type: use letters, digits and -.", "{} no és un tipus de servei: fes servir lletres, xifres i -.", "{} no es un tipo de servicio: usa letras, cifras y -.";
    BadPort => "The port must be 1-65535.", "El port ha de ser 1-65535.", "El puerto debe ser 1-65535.";
    BadTagKey => "At most {} characters, no = or control characters.", "Com a molt {} caràcters, sense = ni caràcters de control.", "Como mucho {} caracteres, sin = ni caracteres de control.";
    NoControl => "No control characters.", "Sense caràcters de control.", "Sin caracteres de control.";
    UnknownAction => "Unknown action {}.", "Acció desconeguda {}.", "Acción desconocida {}.";
    CatalogOff => "The catalog is off on this node.", "El catàleg està desactivat en aquest node.", "El catálogo está desactivado en este nodo.";
    Starting => "The dashboard is starting; try again in a moment.", "El tauler s'està iniciant; torna-ho a provar d'aquí a un moment.", "El panel se está iniciando; vuelve a intentarlo en un momento.";
    UnknownLanguage => "Unknown language (en, ca, es).", "Llengua desconeguda (en, ca, es).", "Idioma desconocido (en, ca, es).";
    UnknownParam => "Unknown parameter {} (expected: {}).", "Paràmetre desconegut {} (s'esperava: {}).", "Parámetro desconocido {} (se esperaba: {}).";
    RepeatedParam => "{} is given more than once.", "{} apareix més d'una vegada.", "{} aparece más de una vez.";
    BadQuery => "Malformed query string.", "Cadena de consulta mal formada.", "Cadena de consulta mal formada.";
    Apps => "Apps", "Aplicacions", "Aplicaciones";
    AppStore => "App store", "Botiga d'aplicacions", "Tienda de aplicaciones";
    OtherNodes => "Other nodes", "Altres nodes", "Otros nodos";
    NoApps => "No apps installed.", "No hi ha cap aplicació instal·lada.", "No hay ninguna aplicación instalada.";
    NoOtherApps => "No other node runs apps.", "Cap altre node no executa aplicacions.", "Ningún otro nodo ejecuta aplicaciones.";
    AppsOff => "Apps are off on this node.", "Les aplicacions estan desactivades en aquest node.", "Las aplicaciones están desactivadas en este nodo.";
    AppsUnavailable => "Apps are not available on this node: {}", "Les aplicacions no estan disponibles en aquest node: {}", "Las aplicaciones no están disponibles en este nodo: {}";
    CouldNotAsk => "Could not ask {}: {}", "No s'ha pogut preguntar a {}: {}", "No se ha podido preguntar a {}: {}";
    AppState => "State", "Estat", "Estado";
    AppSource => "Source", "Origen", "Origen";
    Category => "Category", "Categoria", "Categoría";
    Architectures => "Architectures", "Arquitectures", "Arquitecturas";
    AnyArch => "any", "qualsevol", "cualquiera";
    StartApp => "Start", "Inicia", "Iniciar";
    StopApp => "Stop", "Atura", "Detener";
    RestartApp => "Restart", "Reinicia", "Reiniciar";
    RemoveApp => "Remove", "Elimina", "Eliminar";
    InstallApp => "Install", "Instal·la", "Instalar";
    InstallTitle => "Install {}", "Instal·la {}", "Instalar {}";
    Purge => "Also delete its data (volumes)", "Esborra també les dades (volums)", "Borrar también sus datos (volúmenes)";
    ConfirmRemove => "Remove {}?", "Vols eliminar {}?", "¿Eliminar {}?";
    RemoveWarning => "Its containers are stopped and deleted, and its services unpublished. Its data (volumes) is kept unless you tick the box below; deleted data cannot be recovered.", "Els seus contenidors s'aturen i s'esborren, i els seus serveis es despubliquen. Les dades (volums) es conserven si no marques la casella de sota; les dades esborrades no es poden recuperar.", "Sus contenedores se detienen y se borran, y sus servicios se despublican. Los datos (volúmenes) se conservan si no marcas la casilla de abajo; los datos borrados no se pueden recuperar.";
    ConfirmRemoveButton => "Yes, remove it", "Sí, elimina-la", "Sí, eliminarla";
    Cancel => "Cancel", "Cancel·la", "Cancelar";
    NotThisCpu => "Not for this node's CPU ({}).", "No és per a la CPU d'aquest node ({}).", "No es para la CPU de este nodo ({}).";
    StoreProblems => "Some store sources could not be read", "Algunes fonts de la botiga no s'han pogut llegir", "Algunas fuentes de la tienda no se han podido leer";
    NoTemplates => "No templates in this category.", "No hi ha cap plantilla en aquesta categoria.", "No hay ninguna plantilla en esta categoría.";
    NoSuchCategory => "category: the store has no category {}.", "category: la botiga no té cap categoria {}.", "category: la tienda no tiene ninguna categoría {}.";
    NoSuchTemplate => "The store has no template {}.", "La botiga no té cap plantilla {}.", "La tienda no tiene ninguna plantilla {}.";
    Parameters => "Parameters", "Paràmetres", "Parámetros";
    RequiredMark => "(required)", "(obligatori)", "(obligatorio)";
    InstallName => "Name of the app on this node", "Nom de l'aplicació en aquest node", "Nombre de la aplicación en este nodo";
    Containers => "Containers", "Contenidors", "Contenedores";
    ServiceName => "Service", "Servei", "Servicio";
    Container => "Container", "Contenidor", "Contenedor";
    Image => "Image", "Imatge", "Imagen";
    Restarts => "Restarts", "Reinicis", "Reinicios";
    Ports => "Ports", "Ports", "Puertos";
    PublishedServices => "Published services", "Serveis publicats", "Servicios publicados";
    NothingPublished => "Nothing published.", "No hi ha res publicat.", "No hay nada publicado.";
    Logs => "Logs", "Registre", "Registro";
    NoLogs => "No log lines yet.", "Encara no hi ha cap línia al registre.", "Todavía no hay ninguna línea en el registro.";
    LogsUnavailable => "The log cannot be read now: {}", "Ara no es pot llegir el registre: {}", "Ahora no se puede leer el registro: {}";
    AppInstalled => "Installed.", "Instal·lada.", "Instalada.";
    AppInstalling => "The installation goes on (images can take a while); reload this page to see the app once it is done.", "La instal·lació continua (les imatges poden trigar); torna a carregar aquesta pàgina per veure l'aplicació quan acabi.", "La instalación continúa (las imágenes pueden tardar); vuelve a cargar esta página para ver la aplicación cuando termine.";
    AppStarted => "Started.", "Iniciada.", "Iniciada.";
    AppStopped => "Stopped.", "Aturada.", "Detenida.";
    AppRestarted => "Restarted.", "Reiniciada.", "Reiniciada.";
    AppRemoved => "Removed.", "Eliminada.", "Eliminada.";
    StRunning => "running", "en marxa", "en ejecución";
    StStopped => "stopped", "aturada", "detenida";
    StStarting => "starting", "s'inicia", "iniciándose";
    StUnhealthy => "unhealthy", "amb errors", "con errores";
    StFailed => "failed", "fallada", "fallida";
    StInstalling => "installing", "s'instal·la", "instalándose";
    StUpgrading => "upgrading", "s'actualitza", "actualizándose";
    OtherNodeApp => "This app runs on {}; its log is on that node's dashboard.", "Aquesta aplicació s'executa a {}; el seu registre és al tauler d'aquell node.", "Esta aplicación se ejecuta en {}; su registro está en el panel de ese nodo.";
    NoSuchApp => "No app {} is installed here.", "Aquí no hi ha cap aplicació {} instal·lada.", "Aquí no hay ninguna aplicación {} instalada.";
    NotANumber => "Not a whole number.", "No és un nombre enter.", "No es un número entero.";
    BadPath => "An absolute path without \"..\".", "Un camí absolut sense \"..\".", "Una ruta absoluta sin \"..\".";
    BadAppName => "Lowercase letters, digits and -, at most 40, not starting or ending with -.", "Minúscules, xifres i -, com a molt 40, sense començar ni acabar amb -.", "Minúsculas, cifras y -, como mucho 40, sin empezar ni acabar con -.";
    AppExists => "An app with this name is already installed.", "Ja hi ha una aplicació instal·lada amb aquest nom.", "Ya hay una aplicación instalada con este nombre.";
    PortTaken => "Port {} is already used by {}.", "El port {} ja el fa servir {}.", "El puerto {} ya lo usa {}.";
    Monitor => "Network", "Xarxa", "Red";
    MonitorTitle => "Network devices", "Dispositius de xarxa", "Dispositivos de red";
    Device => "Device", "Dispositiu", "Dispositivo";
    DeviceId => "ID", "ID", "ID";
    MonitoredBy => "Monitored by", "Vigilat per", "Vigilado por";
    LastSample => "Last sample", "Última mostra", "Última muestra";
    Cause => "Cause", "Causa", "Causa";
    DevUp => "up", "actiu", "activo";
    DevDown => "down", "caigut", "caído";
    Ago => "{} ago", "fa {}", "hace {}";
    Never => "never", "mai", "nunca";
    MonitorOff => "Network monitoring is off on this node, so it cannot show the devices.", "La vigilància de la xarxa està desactivada en aquest node, i no pot mostrar els dispositius.", "La monitorización de la red está desactivada en este nodo, y no puede mostrar los dispositivos.";
    MonitorHowTo => "To make this node a monitor, set enable = true in the [monitor] section of its configuration file (or start the agent with --monitor) and list the devices: devices = [{ id = \"...\", address = \"...\" }] in that section, --monitor-device ID=ADDRESS, or a CNML file (cnml = \"...\" or --monitor-cnml FILE). Then restart the agent.", "Per fer d'aquest node un monitor, posa enable = true a la secció [monitor] del fitxer de configuració (o inicia l'agent amb --monitor) i indica els dispositius: devices = [{ id = \"...\", address = \"...\" }] en aquella secció, --monitor-device ID=ADREÇA, o un fitxer CNML (cnml = \"...\" o --monitor-cnml FITXER). Després reinicia l'agent.", "Para hacer de este nodo un monitor, pon enable = true en la sección [monitor] del fichero de configuración (o inicia el agente con --monitor) e indica los dispositivos: devices = [{ id = \"...\", address = \"...\" }] en esa sección, --monitor-device ID=DIRECCIÓN, o un fichero CNML (cnml = \"...\" o --monitor-cnml FICHERO). Después reinicia el agente.";
    NoDevices => "No devices to monitor.", "No hi ha cap dispositiu per vigilar.", "No hay ningún dispositivo que vigilar.";
    NoSuchDevice => "No such device.", "No existeix aquest dispositiu.", "No existe ese dispositivo.";
    Monitors => "Monitors", "Monitors", "Monitores";
    MonitorsPending => "Monitors not counted yet", "Monitors encara no comptats", "Monitores aún no contados";
    OwnersPerDevice => "Owners per device", "Vigilants per dispositiu", "Vigilantes por dispositivo";
    WatchedHere => "Watched by this node", "Vigilats per aquest node", "Vigilados por este nodo";
    NotAsked => "could not be asked", "no s'hi ha pogut preguntar", "no se ha podido preguntar";
    Devices => "Devices", "Dispositius", "Dispositivos";
    DeviceSetProblem => "Device set", "Conjunt de dispositius", "Conjunto de dispositivos";
    Answered => "Answered", "Ha respost", "Ha respondido";
    Loss => "Loss", "Pèrdua", "Pérdida";
    Replies => "{} of {} replies", "{} de {} respostes", "{} de {} respuestas";
    Interfaces => "Interfaces", "Interfícies", "Interfaces";
    IfIndex => "Index", "Índex", "Índice";
    OperStatus => "Operational status", "Estat operatiu", "Estado operativo";
    IfUp => "up", "activa", "activa";
    IfDown => "down", "inactiva", "inactiva";
    InOctets => "In (octets)", "Entrada (octets)", "Entrada (octetos)";
    OutOctets => "Out (octets)", "Sortida (octets)", "Salida (octetos)";
    InRate => "In rate", "Ritme d'entrada", "Tasa de entrada";
    OutRate => "Out rate", "Ritme de sortida", "Tasa de salida";
    CounterWidth => "Counters", "Comptadors", "Contadores";
    PingError => "Ping error", "Error de ping", "Error de ping";
    SnmpError => "SNMP error", "Error d'SNMP", "Error de SNMP";
    Probes => "Probes", "Sondeigs", "Sondeos";
    PingSilent => "Pings with no reply", "Pings sense resposta", "Pings sin respuesta";
    PingNotSent => "Pings not sent", "Pings no enviats", "Pings no enviados";
    SnmpTimeouts => "SNMP requests with no answer", "Peticions SNMP sense resposta", "Peticiones SNMP sin respuesta";
    SnmpGarbage => "Bad SNMP answers", "Respostes SNMP incorrectes", "Respuestas SNMP incorrectas";
    NoSampleYet => "No sample yet.", "Encara no hi ha cap mostra.", "Aún no hay ninguna muestra.";
    History => "History", "Historial", "Historial";
    Resolution => "Resolution", "Resolució", "Resolución";
    Res300 => "5 min (a day)", "5 min (un dia)", "5 min (un día)";
    Res1800 => "30 min (a week)", "30 min (una setmana)", "30 min (una semana)";
    Res7200 => "2 h (a month)", "2 h (un mes)", "2 h (un mes)";
    Res86400 => "1 day (a year)", "1 dia (un any)", "1 día (un año)";
    BadStep => "step: one of 300, 1800, 7200 or 86400, not {}.", "step: un de 300, 1800, 7200 o 86400, no {}.", "step: uno de 300, 1800, 7200 u 86400, no {}.";
    RttChart => "Round-trip time to {}", "Temps d'anada i tornada a {}", "Tiempo de ida y vuelta a {}";
    LossChart => "Ping loss to {}", "Pèrdua de pings a {}", "Pérdida de pings a {}";
    TrafficChart => "Traffic of {} interface {}", "Trànsit de {} a la interfície {}", "Tráfico de {} en la interfaz {}";
    ChartDesc => "{}: one line per series ({}), time in UTC on the horizontal axis, {} on the vertical axis; a gap means no sample in that period. The table after the chart gives the same data.", "{}: una línia per sèrie ({}), l'hora en UTC a l'eix horitzontal, {} a l'eix vertical; un buit vol dir cap mostra en aquell període. La taula després del gràfic dona les mateixes dades.", "{}: una línea por serie ({}), la hora en UTC en el eje horizontal, {} en el eje vertical; un hueco significa ninguna muestra en ese periodo. La tabla tras el gráfico da los mismos datos.";
    NoSamples => "No samples at this resolution yet.", "Encara no hi ha mostres amb aquesta resolució.", "Aún no hay muestras con esta resolución.";
    SeriesCol => "Series", "Sèrie", "Serie";
    Points => "Points", "Punts", "Puntos";
    Latest => "Latest", "Última", "Última";
    Minimum => "Minimum", "Mínim", "Mínimo";
    Mean => "Mean", "Mitjana", "Media";
    Maximum => "Maximum", "Màxim", "Máximo";
    DirIn => "in", "entrada", "entrada";
    DirOut => "out", "sortida", "salida";
    StateRule => "A device is down only when most of its owners' recent probes got no answer (neither ping nor SNMP); up when not down and some owner got an answer; unknown otherwise.", "Un dispositiu està caigut només quan la majoria dels sondeigs recents dels seus vigilants no han tingut resposta (ni ping ni SNMP); actiu quan no està caigut i algun vigilant ha tingut resposta; desconegut altrament.", "Un dispositivo está caído solo cuando la mayoría de los sondeos recientes de sus vigilantes no han tenido respuesta (ni ping ni SNMP); activo cuando no está caído y algún vigilante ha tenido respuesta; desconocido en otro caso.";
}

/// Fill `{}` placeholders in order.
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    let mut args = args.iter();
    while let Some(i) = rest.find("{}") {
        out.push_str(&rest[..i]);
        out.push_str(args.next().copied().unwrap_or(""));
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_negotiation() {
        assert_eq!(Lang::negotiate("ca-ES,ca;q=0.9,es;q=0.8"), Some(Lang::Ca));
        assert_eq!(Lang::negotiate("fr-FR, es;q=0.5, en;q=0.4"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("de, fr"), None);
        assert_eq!(Lang::negotiate("en;q=0.2, es;q=0.9"), Some(Lang::Es));
        assert_eq!(Lang::negotiate(";;,q=,,es;q=abc"), Some(Lang::Es));
        assert_eq!(Lang::negotiate("es;q=0, ca;q=2"), None);
        assert_eq!(Lang::negotiate(""), None);
    }

    #[test]
    fn every_string_is_translated() {
        // Catalan and Spanish differ from English except for names, units
        // and abbreviations shared by the three.
        let shared = [
            T::AppName,
            T::Cpu,
            T::Rtt,
            T::Ip,
            T::Txt,
            T::MicroCloud,
            T::Error,
            T::No,
            T::Protocol,
            T::Temperature,
            T::Members,
            T::Nodes,
            T::Node,
            T::JoinHelp,
            T::Ports,
            T::DeviceId,
        ];
        for &t in T::ALL {
            for l in Lang::ALL {
                assert!(!t.get(l).is_empty(), "{t:?} in {l:?}");
            }
            if !shared.contains(&t) {
                assert!(
                    t.get(Lang::Ca) != t.get(Lang::En) || t.get(Lang::Es) != t.get(Lang::En),
                    "{t:?} is not translated"
                );
            }
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(fill("{} of {}", &["1", "2"]), "1 of 2");
        assert_eq!(fill("{} {}", &["1"]), "1 ");
    }
}
